/* event_int.h — what the JSON reader (json_in.c) needs of an event beyond
 * keel/event.h. Not installed. */
#ifndef KEEL_EVENT_INT_H
#define KEEL_EVENT_INT_H

#include "keel/event.h"
#include "keel/io.h"

/* The event's scratch buffer for the input's other members (owned by the
 * event, KEEL_MEM_IO): kept across resets, so parsing them costs no
 * allocation per event once it has grown (one past SCRATCH_KEEP bytes is
 * freed at the reset). Empty on return; other members that lived in it
 * are forgotten. */
keel_buf *keel__event_scratch(keel_event_t *e);

/* Makes the event's other members the scratch's bytes from `off` on (no
 * copy: they live in the scratch until the next reset). */
void keel__event_others_from_scratch(keel_event_t *e, size_t off);

#endif
