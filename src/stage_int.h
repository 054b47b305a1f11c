/* stage_int.h — the stage contract as the pipeline and the memo enforce it
 * after a stage has run. Not installed. */
#ifndef KEEL_STAGE_INT_H
#define KEEL_STAGE_INT_H

#include <stddef.h>

#include "keel/event.h"
#include "keel/stage.h"

/* 1 when each of d's declared writes that ev holds has its declared type;
 * else 0 with the first one that does not named in `reason` ("wrote field
 * 'score' as int; it declares float"). d, io and ev are borrowed. */
int keel__stage_writes_typed(const keel_stage_def *d, const keel_stage_io *io, const keel_event_t *ev, char *reason,
                             size_t len);

#endif
