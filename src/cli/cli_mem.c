/* cli_mem.c — memory figures in the summaries of `keel run` (and the
 * commands sharing its options): the JSON summary's `mem` object, one human
 * line, and the warning a --memory-budget gives when it shrinks caches. */
#include <stdio.h>

#include "cli.h"
#include "keel/budget.h"
#include "keel/mem.h"
#include "runopts.h"

#define MiB(x) ((double)(x) / 1048576.0)

static void budget_json(FILE *f, const keel_budget_stats *b) {
  fprintf(f,
          ",\"budget\":{\"limit\":%llu,\"fixed_tracked\":%llu,\"fixed_run\":%llu,\"reserve\":%llu,"
          "\"cache_share\":%llu,\"caches_asked\":%llu,\"caches_granted\":%llu,\"caches_now\":%llu,"
          "\"caches_shrunk_at_start\":%zu,\"shrinks\":%llu,\"regrows\":%llu,\"pauses\":%llu,\"paused_s\":%.6f,"
          "\"overruns\":%llu,\"tracked_max\":%lld}",
          (unsigned long long)b->limit, (unsigned long long)b->fixed_tracked, (unsigned long long)b->fixed_run,
          (unsigned long long)b->reserve, (unsigned long long)b->cache_share, (unsigned long long)b->caches_asked,
          (unsigned long long)b->caches_granted, (unsigned long long)b->caches_now, b->n_shrunk,
          (unsigned long long)b->shrinks, (unsigned long long)b->regrows, (unsigned long long)b->pauses, b->paused_s,
          (unsigned long long)b->overruns, (long long)b->tracked_max);
}

void cli_mem_write_json(FILE *f, const keel_pipeline_t *p) {
  keel_mem_process m;
  keel_mem_process_stats(&m);
  fprintf(f,
          "{\"tracked_current\":%lld,\"tracked_peak\":%lld,\"live_blocks\":%llu,\"rss_bytes\":%llu,"
          "\"rss_peak_bytes\":%llu,\"rss_gap_bytes\":%lld,\"tracking\":%s,\"tags\":{",
          (long long)m.tracked_current, (long long)m.tracked_peak, (unsigned long long)m.live_blocks,
          (unsigned long long)m.rss_bytes, (unsigned long long)m.rss_peak_bytes, (long long)m.rss_gap,
          keel_mem_tracking() ? "true" : "false");
  unsigned n = keel_mem_tag_count(), shown = 0;
  for (unsigned i = 0; i < n; i++) {
    keel_mem_stats s;
    if (keel_mem_tag_stats((keel_mem_tag)i, &s) != KEEL_OK || !s.allocs) continue;
    /* Tag names are stage names, "cache.STAGE" or fixed words: no quotes or
     * control characters (stage names are field names). */
    fprintf(f, "%s\"%s\":{\"current\":%lld,\"peak\":%lld,\"allocs\":%llu,\"frees\":%llu}", shown++ ? "," : "",
            keel_mem_tag_name((keel_mem_tag)i), (long long)s.current, (long long)s.peak, (unsigned long long)s.allocs,
            (unsigned long long)s.frees);
  }
  fputc('}', f);
  keel_budget_stats b;
  if (p && keel_pipeline_budget_stats(p, &b) == KEEL_OK) budget_json(f, &b);
  fputc('}', f);
}

void cli_mem_print(FILE *f, const keel_pipeline_t *p) {
  keel_mem_process m;
  keel_mem_process_stats(&m);
  fprintf(f, "  memory: tracked %.1f MiB now, peak %.1f MiB; RSS %.1f MiB, peak %.1f MiB (RSS - tracked %.1f MiB)\n",
          MiB(m.tracked_current), MiB(m.tracked_peak), MiB(m.rss_bytes), MiB(m.rss_peak_bytes), MiB(m.rss_gap));
  keel_budget_stats b;
  if (!p || keel_pipeline_budget_stats(p, &b) != KEEL_OK) return;
  fprintf(f,
          "  budget %.1f MiB: caches %.1f MiB planned (asked %.1f), %.1f now; %llu shrinks, %llu pauses (%.3f s),"
          " %llu overruns\n",
          MiB(b.limit), MiB(b.caches_granted), MiB(b.caches_asked), MiB(b.caches_now), (unsigned long long)b.shrinks,
          (unsigned long long)b.pauses, b.paused_s, (unsigned long long)b.overruns);
}

void cli_mem_budget_warn(const char *cmd, const keel_pipeline_t *p) {
  keel_budget_stats b;
  if (!p || keel_pipeline_budget_stats(p, &b) != KEEL_OK || !b.n_shrunk) return;
  fprintf(stderr, "keel %s: warning: caches shrunk to fit the memory budget: %s\n", cmd, b.note);
}
