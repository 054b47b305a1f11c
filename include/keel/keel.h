/* keel/keel.h — the umbrella header: every public module of libkeel.
 * Include the module headers one by one to keep compile units small; this
 * one is for programs that want the whole library at once. */
#ifndef KEEL_KEEL_H
#define KEEL_KEEL_H

#include "keel/arena.h"
#include "keel/budget.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/event.h"
#include "keel/export.h"
#include "keel/http.h"
#include "keel/io.h"
#include "keel/leak.h"
#include "keel/log.h"
#include "keel/mem.h"
#include "keel/memo.h"
#include "keel/metrics.h"
#include "keel/pipeline.h"
#include "keel/policy.h"
#include "keel/progress.h"
#include "keel/recsys.h"
#include "keel/redis.h"
#include "keel/stage.h"
#include "keel/status.h"
#include "keel/trace.h"
#include "keel/version.h"

#endif
