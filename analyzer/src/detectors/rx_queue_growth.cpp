// rx_queue_growth (research/detectors.md D1): the application does not read a connected TCP
// socket. Three shapes, strongest first:
//   stalled-full:    skmem r >= full_ratio x rb in >= persist_ratio of a run of >= min_samples
//                    snapshots while bytes_received does not move (the sender sees a zero window);
//   growing:         GROW(Recv-Q) over a gap-free run (detectors.md §0.4);
//   stalled-partial: ESTAB, Recv-Q > 0 and unchanged, bytes_received unchanged, >= stall_samples
//                    in a row.
// Only sockets with an fd (inode != 0) in ESTAB or CLOSE-WAIT: inode-0 children are queued at a
// listener (unaccepted_connection), not unread by an application.
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>

namespace sockrewind::analyze {

namespace {

enum class Shape { none, partial, growing, full };

struct Verdict {
  Shape shape = Shape::none;
  Range window;
  Trend trend;
  double full_fraction = 0;
  bool drops_grew = false;
};

bool connected(const Sample& x) {
  return x.inode != 0 && (x.state == k_established || x.state == k_close_wait)
         && x.rx_queue != k_na;
}

// Splits a contiguous range further where the socket is not a connected socket with an fd.
std::vector<Range> connected_ranges(const Track& t, Range r) {
  std::vector<Range> out;
  size_t begin = r.begin;
  for (size_t i = r.begin; i <= r.end; ++i) {
    if (i == r.end || !connected(t.samples[i])) {
      if (i > begin) {
        out.push_back({begin, i});
      }
      begin = i + 1;
    }
  }
  return out;
}

bool unchanged(uint64_t a, uint64_t b) {
  return a == b;
}

Verdict judge(const Timeline& tl, const Track& t, Range r, const Params& p) {
  Verdict v;
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  if (r.size() < min_n) {
    return v;
  }
  const auto& s = t.samples;
  // stalled-full
  size_t full = 0;
  bool have_mem = true;
  for (size_t i = r.begin; i < r.end; ++i) {
    const Sample& x = s[i];
    if (x.rmem_alloc == k_na || x.rcvbuf == k_na || x.rcvbuf == 0) {
      have_mem = false;
      break;
    }
    const bool is_full =
        static_cast<double>(x.rmem_alloc) >= p.get("full_ratio") * static_cast<double>(x.rcvbuf);
    const bool still = i == r.begin || x.bytes_received == k_na64
                       || unchanged(x.bytes_received, s[i - 1].bytes_received);
    if (is_full && still) {
      ++full;
    }
  }
  v.full_fraction = static_cast<double>(full) / static_cast<double>(r.size());
  for (size_t i = r.begin + 1; i < r.end; ++i) {
    if (s[i].drops != k_na && s[i - 1].drops != k_na && s[i].drops > s[i - 1].drops) {
      v.drops_grew = true;
    }
  }
  if (have_mem && v.full_fraction >= p.get("persist_ratio")) {
    v.shape = Shape::full;
    v.window = r;
    return v;
  }
  // growing
  uint32_t lo = k_na;
  uint32_t hi = 0;
  for (size_t i = r.begin; i < r.end; ++i) {
    lo = std::min(lo, s[i].rx_queue);
    hi = std::max(hi, s[i].rx_queue);
  }
  if (static_cast<double>(hi - lo) >= p.get("min_growth_bytes")) {
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t i = r.begin; i < r.end; ++i) {
      ts.push_back(tl.dt(s[r.begin].snap, s[i].snap));
      xs.push_back(s[i].rx_queue);
    }
    v.trend = grow_test(ts, xs, p.get("tolerance_bytes"), p.get("min_growth_bytes"), min_n);
    if (v.trend.grows) {
      v.shape = Shape::growing;
      v.window = r;
      return v;
    }
  }
  // stalled-partial: the longest streak of the same non-empty Recv-Q with nothing received
  const auto stall_n = static_cast<size_t>(p.get("stall_samples"));
  size_t begin = r.begin;
  for (size_t i = r.begin + 1; i <= r.end; ++i) {
    const bool same = i < r.end && s[i].rx_queue == s[i - 1].rx_queue
                      && unchanged(s[i].bytes_received, s[i - 1].bytes_received);
    if (!same) {
      // Only ESTAB: unread bytes left in CLOSE-WAIT (+1 for the FIN) are close_wait_leak's.
      if (i - begin >= stall_n && s[begin].state == k_established && s[begin].rx_queue > 0
          && (v.shape != Shape::partial || i - begin > v.window.size())) {
        v.shape = Shape::partial;
        v.window = {begin, i};
      }
      begin = i;
    }
  }
  return v;
}

Json point(const Timeline& tl, const Sample& x) {
  Json j;
  j["t"] = snap_time(tl, x.snap);
  j["state"] = state_name(x.state);
  j["rx_queue"] = x.rx_queue;
  const auto opt = [](uint32_t v) { return v == k_na ? Json(nullptr) : Json(v); };
  j["rmem_alloc"] = opt(x.rmem_alloc);
  j["rcvbuf"] = opt(x.rcvbuf);
  j["drops"] = opt(x.drops);
  j["bytes_received"] = x.bytes_received == k_na64 ? Json(nullptr) : Json(x.bytes_received);
  j["last_data_recv_ms"] = opt(x.last_data_recv_ms);
  return j;
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  for (const Track& t : tl.tracks) {
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    Verdict best;
    for (const Range& c : contiguous_runs(tl, t)) {
      for (const Range& r : connected_ranges(t, c)) {
        Verdict v = judge(tl, t, r, p);
        if (v.shape > best.shape) {
          best = v;
        }
      }
    }
    if (best.shape == Shape::none) {
      continue;
    }
    const Sample& first = t.samples[best.window.begin];
    const Sample& last = t.samples[best.window.end - 1];
    Finding f;
    f.detector = "rx_queue_growth";
    f.subject = socket_subject(series, tl, t, last);
    set_owner(f, tl, last.owner);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const size_t n = best.window.size();
    const std::string who = last.owner == k_na
                                ? std::string("no owning process seen")
                                : "pid " + std::to_string(tl.procs[last.owner].pid) + " ("
                                      + series.strings.at(tl.procs[last.owner].comm)
                                      + ") is not reading";
    const std::string sock =
        proto_name(t) + " " + endpoint(series, t, true) + " <- " + endpoint(series, t, false);
    const double span = tl.dt(first.snap, last.snap);
    const bool long_enough = span >= p.get("critical_seconds");
    switch (best.shape) {
    case Shape::full:
      f.severity = best.drops_grew || long_enough ? Severity::critical : Severity::warning;
      f.summary = "Recv-Q of " + sock + " sits at its buffer limit (" + human_bytes(last.rmem_alloc)
                  + " of " + human_bytes(last.rcvbuf) + ") in " + std::to_string(n)
                  + " snapshots over " + num(span) + " s, nothing received (zero window); ";
      break;
    case Shape::growing:
      f.severity = best.drops_grew ? Severity::critical : Severity::warning;
      f.summary = "Recv-Q of " + sock + " grows from " + human_bytes(first.rx_queue) + " to "
                  + human_bytes(last.rx_queue) + " over " + std::to_string(n) + " snapshots ("
                  + human_bytes(best.trend.slope) + "/s); ";
      f.evidence["slope_bytes_per_s"] = best.trend.slope;
      f.evidence["kendall_tau"] = best.trend.tau;
      if (last.rcvbuf != k_na && best.trend.slope > 0 && last.rcvbuf > last.rmem_alloc) {
        f.evidence["eta_full_s"] =
            static_cast<double>(last.rcvbuf - last.rmem_alloc) / best.trend.slope;
      }
      break;
    case Shape::partial:
    case Shape::none:
      f.severity = best.drops_grew ? Severity::critical : Severity::warning;
      f.summary = "Recv-Q of " + sock + " holds " + human_bytes(last.rx_queue)
                  + " unread, unchanged for " + std::to_string(n) + " snapshots over " + num(span)
                  + " s; ";
      break;
    }
    f.summary += who;
    f.evidence["shape"] = best.shape == Shape::full      ? "stalled_full"
                          : best.shape == Shape::growing ? "growing"
                                                         : "stalled_partial";
    f.evidence["drops_increased"] = best.drops_grew;
    f.weight = static_cast<double>(last.rx_queue);
    Json ser = Json::array();
    const size_t lo = best.window.begin > 0 ? best.window.begin - 1 : 0;
    const size_t hi = std::min(best.window.end + 1, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      ser.push_back(point(tl, t.samples[i]));
    }
    f.evidence["series"] = std::move(ser);
    out.push_back(std::move(f));
  }
}

} // namespace

Detector rx_queue_growth_detector() {
  return {"rx_queue_growth",
          "Recv-Q of a connected TCP socket grows across snapshots, or sits at its buffer limit",
          {
              {"min_samples", 5, "snapshots in a gap-free run before a trend or stall counts"},
              {"min_growth_bytes", 65536, "growth needed for 'growing' (GROW abs_min)"},
              {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease"},
              {"full_ratio", 0.9, "skmem r / rb at or above which the buffer counts as full"},
              {"persist_ratio", 0.8, "fraction of snapshots full for 'stalled-full'"},
              {"stall_samples", 5, "snapshots of an unchanged non-empty Recv-Q for a stall"},
              {"critical_seconds", 300, "stalled-full this long is critical"},
          },
          &run};
}

} // namespace sockrewind::analyze
