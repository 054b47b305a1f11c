// bench/CaffeineReplay.java — replays a LIRS-format trace (one integer key per line; empty lines and
// `*` skipped) through Caffeine 2.6.2 as a cache of SIZE entries (getIfPresent, put on a miss) and
// prints its hit ratio, the mean of RUNS runs (its sketch is seeded at random), to set beside
// `keel sim --policy default --size SIZE` at any size, not only REFERENCE.csv's.
// MODE sync runs Caffeine's maintenance on the calling thread (the policy sees every request in
// order, and the cache never holds more than SIZE entries); async uses its default executor, as
// an application would (maintenance lags, and the cache overshoots SIZE meanwhile).
// Set-up: apt-get install -y libcaffeine-java default-jdk-headless
// Build:  javac -cp /usr/share/java/caffeine.jar -d cr bench/CaffeineReplay.java
// Run:    java -cp /usr/share/java/caffeine.jar:cr CaffeineReplay TRACE.lirs SIZE sync|async RUNS
import com.github.benmanes.caffeine.cache.*;
import java.nio.file.*;
import java.util.*;

public final class CaffeineReplay {
  public static void main(String[] a) throws Exception {
    List<Long> keys = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(a[0]))) {
      line = line.trim();
      if (!line.isEmpty() && !line.equals("*")) keys.add(Long.parseLong(line));
    }
    int size = Integer.parseInt(a[1]);
    boolean sync = a[2].equals("sync");
    int runs = Integer.parseInt(a[3]);
    double sum = 0;
    long most = 0;
    for (int r = 0; r < runs; r++) {
      Caffeine<Object, Object> b = Caffeine.newBuilder().maximumSize(size);
      if (sync) b = b.executor(Runnable::run);
      Cache<Long, Long> c = b.build();
      long hits = 0;
      for (Long k : keys) {
        if (c.getIfPresent(k) != null) hits++;
        else c.put(k, k);
        most = Math.max(most, c.estimatedSize());
      }
      sum += (double) hits / keys.size();
    }
    System.out.printf("%s size %d %s: hit ratio %.4f (mean of %d runs; most entries held %d)%n", a[0], size,
        a[2], sum / runs, runs, most);
  }
}
