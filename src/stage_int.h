/* stage_int.h — the stage contract as the pipeline and the memo enforce it
 * after a stage has run. Not installed. */
#ifndef KEEL_STAGE_INT_H
#define KEEL_STAGE_INT_H

#include <stddef.h>

#include "keel/event.h"
#include "keel/stage.h"

/* 1 when a and b are the same value (type and content; NONE: absent). */
int keel__value_same(const keel_value *a, const keel_value *b);

/* Copies the values of d's declared writes in ev (NONE where absent) into
 * before[0..d->n_writes): what keel__stage_writes_typed compares with. */
void keel__stage_writes_before(const keel_stage_def *d, const keel_stage_io *io, const keel_event_t *ev,
                               keel_value *before);

/* 1 when each of d's declared writes that the stage set (that differs from
 * `before`; NULL: every one ev holds) has its declared type; else 0 with the
 * first one that does not named in `reason` ("wrote field 'score' as int;
 * it declares float"). A value the input carried and the stage left alone
 * is the input's, checked (if at all) as a read. All borrowed. */
int keel__stage_writes_typed(const keel_stage_def *d, const keel_stage_io *io, const keel_event_t *ev,
                             const keel_value *before, char *reason, size_t len);

#endif
