// `report --format html -o FILE`: one self-contained page per report, rendered by the real
// binary from the real samples. Checked in C++ (a chart with a drawn path per finding, no URL,
// no script, hostile text escaped, the -o exit codes and atomic write), then in headless
// Chromium when installed: the charts survive in the rendered DOM, a screenshot is a real
// picture, and a canary listener proves the browser fetched nothing (a page without the CSP
// does reach it, the report and a page with only the CSP's head do not).
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/report_html.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace sockrewind;
namespace fs = std::filesystem;

namespace {

constexpr const char* k_chromium = "/usr/bin/chromium";

using test::Run;

Run analyze_bin(std::vector<std::string> args) {
  args.insert(args.begin(), SOCKREWIND_ANALYZE_BIN);
  return test::run_with_timeout(args);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return s;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

// The <article class="finding ..."> elements of a page, in order.
std::vector<std::string> articles(const std::string& html) {
  std::vector<std::string> out;
  size_t p = html.find("<article class=\"finding");
  while (p != std::string::npos) {
    const size_t end = html.find("</article>", p);
    REQUIRE(end != std::string::npos);
    out.push_back(html.substr(p, end - p));
    p = html.find("<article class=\"finding", end);
  }
  return out;
}

// The `d` of every series path (<path class="series..." ... d="...">) in `html`.
std::vector<std::string> series_paths(const std::string& html) {
  static const std::regex k_path(R"re(<path class="series[^"]*"[^>]* d="([^"]*)")re");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), k_path);
       it != std::sregex_iterator();
       ++it) {
    out.push_back((*it)[1].str());
  }
  return out;
}

// The `d` of the series path of column `name` (its <title>), or "" when there is none.
std::string series_path(const std::string& html, const std::string& name) {
  const std::regex re("<path class=\"series[^\"]*\"[^>]* d=\"([^\"]*)\"><title>" + name + "<");
  std::smatch m;
  return std::regex_search(html, m, re) ? m[1].str() : std::string();
}

// A drawn path: starts with a move and has at least one coordinate pair after it.
bool drawn(const std::string& d) {
  static const std::regex k_drawn(R"(^M-?[0-9.]+ -?[0-9.]+[MLh].*)");
  return std::regex_match(d, k_drawn);
}

// What must never be in a page: anything that loads, runs or links to somewhere else.
void check_self_contained(const std::string& html) {
  const std::string l = lower(html);
  for (const char* bad : {"http://",
                          "https://",
                          "//www.",
                          "src=",
                          "href=\"http",
                          "<script",
                          "<img",
                          "<link",
                          "<iframe",
                          "<object",
                          "<embed",
                          "url(",
                          "@import",
                          "xlink:href"}) {
    INFO(bad);
    CHECK(l.find(bad) == std::string::npos);
  }
  CHECK_THAT(html,
             Catch::Contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                             "'none'; style-src 'unsafe-inline'; img-src data:\">"));
}

// A capture of a full listener (an accept_queue_backlog finding) whose owner, host and unix
// path carry markup: the comm a script, the cmdline an <img> pointing at `canary_url`.
std::string hostile_capture(const fs::path& dir, const std::string& canary_url) {
  fs::create_directories(dir);
  synth::Host h;
  h.hostname = "web<b>1</b>&\"'";
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s{.realtime_ns = 1'790'000'000'000'000'000 + int64_t{i} * 1'000'000'000,
                  .boottime_ns = 1'000'000'000'000 + int64_t{i} * 1'000'000'000};
    s.sockets.push_back({.state = 10,
                         .local = "0.0.0.0",
                         .lport = 7000,
                         .remote = "0.0.0.0",
                         .rx = 5,
                         .tx = 4,
                         .inode = 1000,
                         .cookie = 77,
                         .owners = {{4242, 3}}});
    s.sockets.push_back({.family = 1,
                         .type = 1,
                         .proto = 0,
                         .state = 10,
                         .rx = 3,
                         .tx = 2,
                         .inode = 2000,
                         .cookie = 78,
                         .path = "/run/<svg onload=alert(2)>.sock",
                         .owners = {{4242, 4}}});
    s.procs.push_back({.pid = 4242,
                       .start_ticks = 99,
                       .comm = "<script>alert(1)</script>",
                       .cmdline = "srv <img src=\"" + canary_url + "\"> a&b 'q' \x1b[2J",
                       .fd_count = 5,
                       .socket_fds = 2});
    s.counters["TcpExt.ListenOverflows"] = int64_t{3} * i;
    s.limits["net.core.somaxconn"] = "4096";
    snaps.push_back(std::move(s));
  }
  return synth::write_series(dir.string(), h, snaps);
}

// A TCP listener on 127.0.0.1 that records the first line of every request it receives.
class Canary {
public:
  Canary() : m_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    REQUIRE(m_fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(m_fd, 16) == 0);
    REQUIRE(::getsockname(m_fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    m_port = ntohs(a.sin_port);
    m_thread = std::thread([this] { serve(); });
  }

  Canary(const Canary&) = delete;
  Canary& operator=(const Canary&) = delete;
  Canary(Canary&&) = delete;
  Canary& operator=(Canary&&) = delete;

  ~Canary() {
    m_stop = true;
    m_thread.join();
    ::close(m_fd);
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(m_port) + path;
  }

  // Every request line so far ("GET /x HTTP/1.1"), or "(connection)" when none was read.
  std::vector<std::string> requests() const {
    const std::lock_guard<std::mutex> lock(m_mu);
    return m_requests;
  }

  bool saw(const std::string& path, std::chrono::milliseconds wait) const {
    const auto until = std::chrono::steady_clock::now() + wait;
    do {
      for (const std::string& r : requests()) {
        if (r.find(" " + path + " ") != std::string::npos) {
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < until);
    return false;
  }

private:
  void serve() {
    while (!m_stop) {
      pollfd p{m_fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) {
        continue;
      }
      const int c = ::accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      std::string line = "(connection)";
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 2000) > 0) {
        char buf[512];
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n > 0) {
          const std::string req(buf, static_cast<size_t>(n));
          line = req.substr(0, req.find('\r'));
        }
      }
      ::close(c);
      const std::lock_guard<std::mutex> lock(m_mu);
      m_requests.push_back(line);
    }
  }

  int m_fd = -1;
  uint16_t m_port = 0;
  std::atomic<bool> m_stop{false};
  mutable std::mutex m_mu;
  std::vector<std::string> m_requests;
  std::thread m_thread;
};

// Headless Chromium on a file, with a profile of its own, its background services off and
// every host name unresolvable (127.0.0.1 stays reachable: the canary). `mode` is
// "--dump-dom" or "--screenshot=FILE".
Run chromium(const fs::path& profile, const std::string& mode, const fs::path& page) {
  return test::run_with_timeout({k_chromium,
                                 "--headless",
                                 "--no-sandbox",
                                 "--disable-gpu",
                                 "--no-first-run",
                                 "--disable-background-networking",
                                 "--disable-component-update",
                                 "--disable-sync",
                                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                 "--user-data-dir=" + profile.string(),
                                 "--window-size=1200,3000",
                                 mode,
                                 "file://" + page.string()},
                                120);
}

uint32_t be32(const std::string& b, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(b[at])) << 24U)
         | (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16U)
         | (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8U)
         | static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3]));
}

} // namespace

TEST_CASE("report html: every sample is one self-contained page with a chart per finding",
          "[report][html]") {
  const fs::path samples = fs::path(SOCKREWIND_SOURCE_DIR) / "samples";
  test::TempDir dir;
  size_t files = 0;
  size_t charted = 0;
  for (const auto& e : fs::directory_iterator(samples)) {
    if (e.path().extension() != ".sqlite") {
      continue;
    }
    ++files;
    const std::string name = e.path().stem().string();
    INFO(name);
    const fs::path page = dir.path() / (name + ".html");
    const Run r =
        analyze_bin({"report", e.path().string(), "--format", "html", "-o", page.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out.empty()); // -o: nothing on stdout
    CHECK(r.err.empty());
    const std::string html = test::read_file(page);
    CHECK(html.starts_with("<!DOCTYPE html>"));
    CHECK(html.size() < 200'000);
    check_self_contained(html);

    const Run j = analyze_bin({"report", e.path().string(), "--format", "json"});
    REQUIRE(j.code == 0);
    const auto report = nlohmann::json::parse(j.out);
    CHECK_THAT(html, Catch::Contains("<td>snapshots</td><td>" + report["snapshots"].dump()));
    for (const auto& h : report["hosts"]) {
      CHECK_THAT(html, Catch::Contains(h.get<std::string>()));
    }
    const std::vector<std::string> arts = articles(html);
    REQUIRE(arts.size() == report["findings"].size());
    for (size_t i = 0; i < arts.size(); ++i) {
      const auto& f = report["findings"][i];
      const std::string& a = arts[i];
      INFO(f["detector"].get<std::string>() + ": " + f["summary"].get<std::string>());
      // In report order (most severe first), each with its detector, severity and owner.
      CHECK_THAT(a, Catch::Contains("<code>" + f["detector"].get<std::string>() + "</code>"));
      CHECK(a.starts_with("<article class=\"finding " + f["severity"].get<std::string>()));
      if (f["subject"].contains("pid")) {
        CHECK_THAT(a,
                   Catch::Contains("Process <b>" + f["subject"]["comm"].get<std::string>()
                                   + "</b> pid " + f["subject"]["pid"].dump()));
      }
      // A chart with a drawn line per numeric column, the limit dashed where there is one.
      CHECK_THAT(a, Catch::Contains("<svg class=\"chart\""));
      const std::vector<std::string> paths = series_paths(a);
      REQUIRE(!paths.empty());
      for (const std::string& d : paths) {
        INFO(d);
        CHECK(drawn(d));
      }
      // The limit columns are the ones the finding names, and they are drawn dashed.
      bool has_limit = false;
      if (f["evidence"].contains("chart")) {
        for (const auto& l : f["evidence"]["chart"]["limits"]) {
          has_limit = has_limit || f["evidence"]["series"][0].contains(l.get<std::string>());
        }
      }
      if (has_limit) {
        CHECK_THAT(a, Catch::Contains("<path class=\"series limit\""));
      }
      // Axes: the first and last time of the series.
      CHECK_THAT(a, Catch::Contains(f["evidence"]["series"][0]["t"].get<std::string>()));
      ++charted;
    }
  }
  CHECK(files >= 6);
  CHECK(charted >= 10);
}

TEST_CASE("report html: the accept queue is drawn against its max backlog", "[report][html]") {
  test::TempDir dir;
  const fs::path page = dir.path() / "aq.html";
  const std::string file =
      (fs::path(SOCKREWIND_SOURCE_DIR) / "samples" / "accept-queue-backlog.sqlite").string();
  REQUIRE(analyze_bin({"report",
                       file,
                       "--detectors",
                       "accept_queue_backlog",
                       "--format",
                       "html",
                       "-o",
                       page.string()})
              .code
          == 0);
  const std::string html = test::read_file(page);
  const std::vector<std::string> arts = articles(html);
  REQUIRE(arts.size() == 1);
  // queue 5 of max_backlog 4 in all 6 snapshots: two flat lines of 6 points, the limit dashed
  // and below the queue (a smaller y is higher up).
  static const std::regex k_queue(
      R"re(<path class="series" stroke="[^"]*" d="([^"]*)"><title>queue<)re");
  static const std::regex k_limit(
      R"re(<path class="series limit" stroke="[^"]*" d="([^"]*)"><title>max_backlog<)re");
  std::smatch q;
  std::smatch m;
  REQUIRE(std::regex_search(arts[0], q, k_queue));
  REQUIRE(std::regex_search(arts[0], m, k_limit));
  const auto ys = [](const std::string& d) {
    std::vector<double> out;
    static const std::regex k_pt(R"([ML](-?[0-9.]+) (-?[0-9.]+))");
    for (auto it = std::sregex_iterator(d.begin(), d.end(), k_pt); it != std::sregex_iterator();
         ++it) {
      out.push_back(std::stod((*it)[2].str()));
    }
    return out;
  };
  const std::vector<double> qy = ys(q[1].str());
  const std::vector<double> my = ys(m[1].str());
  REQUIRE(qy.size() == 6);
  REQUIRE(my.size() == 6);
  CHECK(std::all_of(qy.begin(), qy.end(), [&](double y) { return y == qy[0]; }));
  CHECK(my[0] > qy[0]);
  CHECK_THAT(arts[0], Catch::Contains("max_backlog (limit)"));
}

TEST_CASE("report html: text from a hostile file is escaped, never markup", "[report][html]") {
  test::TempDir dir;
  const std::string file = hostile_capture(dir.path() / "cap", "http://127.0.0.1:9/canary");
  const fs::path page = dir.path() / "hostile.html";
  const Run r = analyze_bin({"report", file, "--format", "html", "-o", page.string()});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const std::string html = test::read_file(page);
  REQUIRE(!articles(html).empty());
  const std::string l = lower(html);
  CHECK(l.find("<script") == std::string::npos);
  CHECK(l.find("<img") == std::string::npos);
  CHECK(l.find("<b>1") == std::string::npos);
  CHECK(l.find("<svg onload") == std::string::npos);
  CHECK(html.find('\x1b') == std::string::npos);
  CHECK_THAT(html, Catch::Contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
  CHECK_THAT(html,
             Catch::Contains("&lt;img src=&quot;http://127.0.0.1:9/canary&quot;&gt; a&amp;b "
                             "&#39;q&#39; \\x1b[2J"));
  CHECK_THAT(html, Catch::Contains("web&lt;b&gt;1&lt;/b&gt;&amp;&quot;&#39;"));
  CHECK_THAT(html, Catch::Contains("/run/&lt;svg onload=alert(2)&gt;.sock"));
  // Every tag in the page is one the renderer writes.
  static const std::regex k_tag(R"(<([a-zA-Z][a-zA-Z0-9]*))");
  const std::vector<std::string> allowed{
      "html",    "head",    "meta",    "title", "style", "body",  "h1",    "h2",
      "h3",      "p",       "span",    "b",     "code",  "table", "tr",    "td",
      "th",      "section", "nav",     "ol",    "ul",    "li",    "a",     "div",
      "details", "summary", "article", "svg",   "path",  "text",  "footer"};
  for (auto it = std::sregex_iterator(html.begin(), html.end(), k_tag);
       it != std::sregex_iterator();
       ++it) {
    const std::string tag = lower((*it)[1].str());
    INFO(tag);
    CHECK(std::find(allowed.begin(), allowed.end(), tag) != allowed.end());
  }
  // The only href attributes are the index's links to the findings on the page.
  static const std::regex k_href(R"re(href="([^"]*)")re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), k_href);
       it != std::sregex_iterator();
       ++it) {
    CHECK(std::regex_match((*it)[1].str(), std::regex("#f[0-9]+")));
  }
}

TEST_CASE("report html: long series are cut to at most 500 points, spikes kept", "[report][html]") {
  using analyze::Json;
  Json series = Json::array();
  for (int i = 0; i < 5000; ++i) {
    Json row;
    const int s = i % 60;
    const int m = (i / 60) % 60;
    const int h = i / 3600;
    char t[40];
    (void)std::snprintf(t, sizeof t, "2026-11-22T%02d:%02d:%02d.000Z", h, m, s);
    row["t"] = t;
    row["rx_queue"] = i == 3333 ? 1'000'000 : 100 + (i % 7);
    row["rcvbuf"] = 2'000'000;
    row["state"] = "ESTAB";
    row["gap"] = i >= 1000 && i < 2000 ? Json(nullptr) : Json(i);
    series.push_back(row);
  }
  Json report;
  report["version"] = "test";
  report["hosts"] = {"h"};
  report["findings"] = Json::array();
  Json f;
  f["detector"] = "rx_queue_growth";
  f["severity"] = "critical";
  f["summary"] = "s";
  f["subject"] = Json::object();
  f["evidence"]["series"] = series;
  report["findings"].push_back(f);
  const std::string html = analyze::render_report_html(report);
  const std::vector<std::string> paths = series_paths(html);
  REQUIRE(paths.size() == 3); // rx_queue, gap, rcvbuf (state is not a number)
  double top = 1e9;
  for (const std::string& d : paths) {
    INFO(d.substr(0, 200));
    CHECK(drawn(d));
    const size_t points = count(d, "M") + count(d, "L");
    CHECK(points <= analyze::k_html_max_points);
    CHECK(points >= 100);
  }
  // The spike of rx_queue (1,000,000 of 2,000,000, on the chart of 220 px with its limit)
  // survives decimation: some point is drawn at about half height; the rest is near the bottom.
  const std::string rx = series_path(html, "rx_queue");
  static const std::regex k_pt(R"([ML](-?[0-9.]+) (-?[0-9.]+))");
  size_t high = 0;
  for (auto it = std::sregex_iterator(rx.begin(), rx.end(), k_pt); it != std::sregex_iterator();
       ++it) {
    top = std::min(top, std::stod((*it)[2].str()));
    high += std::stod((*it)[2].str()) < 150 ? 1U : 0U;
  }
  CHECK(top < 110);
  CHECK(high == 1);
  CHECK(!series_path(html, "rcvbuf").empty());
  // The 1,000 null rows of "gap" are a gap: the line is lifted (a second move).
  CHECK(count(series_path(html, "gap"), "M") == 2);
  CHECK(html.size() < 100'000);
  CHECK(analyze::html_escape("<a href='x'>&\"") == "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
}

TEST_CASE("report -o: written whole or not at all, exit codes kept", "[report][html]") {
  test::TempDir dir;
  const std::string sample =
      (fs::path(SOCKREWIND_SOURCE_DIR) / "samples" / "accept-queue-backlog.sqlite").string();
  const fs::path out = dir.path() / "out" / "r.html";
  fs::create_directories(out.parent_path());

  // --fail-on met: exit 1, and the report is written all the same.
  Run r = analyze_bin(
      {"report", sample, "--format", "html", "-o", out.string(), "--fail-on", "critical"});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  REQUIRE(fs::exists(out));
  CHECK_THAT(test::read_file(out), Catch::EndsWith("</html>\n"));

  // Any format: -o holds what stdout would; an existing file is replaced.
  for (const std::string fmt : {"json", "text"}) {
    const Run to_stdout = analyze_bin({"report", sample, "--format", fmt});
    REQUIRE(to_stdout.code == 0);
    r = analyze_bin({"report", sample, "--format", fmt, "--output", out.string()});
    CHECK(r.code == 0);
    CHECK(test::read_file(out) == to_stdout.out);
  }

  // Usage error (exit 2) and bad input (exit 3): the old file stays, no temporary is left.
  const std::string before = test::read_file(out);
  r = analyze_bin(
      {"report", sample, "--format", "html", "-o", out.string(), "--detectors", "nope"});
  CHECK(r.code == 2);
  const fs::path bad = dir.path() / "bad.sqlite";
  std::ofstream(bad) << "not a database";
  r = analyze_bin({"report", bad.string(), "--format", "html", "-o", out.string()});
  CHECK(r.code == 3);
  CHECK(test::read_file(out) == before);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out.parent_path())) {
    ++entries;
  }
  CHECK(entries == 1);

  // An output that cannot be written: exit 3, one line naming it, nothing created.
  const fs::path nowhere = dir.path() / "missing" / "r.html";
  r = analyze_bin({"report", sample, "--format", "html", "-o", nowhere.string()});
  CHECK(r.code == 3);
  CHECK(r.out.empty());
  CHECK(r.err
        == "sockrewind-analyze: error: " + nowhere.string()
               + ": cannot write the report: No such file or directory\n");
  CHECK(!fs::exists(nowhere.parent_path()));
}

TEST_CASE("report html: headless Chromium draws the charts and fetches nothing",
          "[report][html][chromium]") {
  if (!fs::exists(k_chromium)) {
    WARN("chromium not installed (apt-get install chromium): the page was not rendered");
    test::skip_test("no /usr/bin/chromium");
  }
  test::TempDir dir;
  const Canary canary;

  // Control: a page without the CSP loads the canary's image, so the canary sees fetches.
  const fs::path control = dir.path() / "control.html";
  std::ofstream(control) << "<!DOCTYPE html><html><body><p>control</p><img src=\""
                         << canary.url("/control") << "\"></body></html>\n";
  Run c = chromium(dir.path() / "profile", "--dump-dom", control);
  INFO(c.err);
  REQUIRE(c.code == 0);
  REQUIRE(canary.saw("/control", std::chrono::seconds(10)));

  // The hostile report: its <img> is text, so nothing is fetched and no <img> is in the DOM.
  const std::string file = hostile_capture(dir.path() / "cap", canary.url("/report"));
  const fs::path page = dir.path() / "hostile.html";
  REQUIRE(analyze_bin({"report", file, "--format", "html", "-o", page.string()}).code == 0);
  c = chromium(dir.path() / "profile", "--dump-dom", page);
  REQUIRE(c.code == 0);
  const std::string dom = lower(c.out);
  CHECK(dom.find("<img") == std::string::npos);
  CHECK(dom.find("<script") == std::string::npos);
  CHECK_THAT(c.out, Catch::Contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
  const std::string html = test::read_file(page);
  const std::vector<std::string> paths = series_paths(html);
  REQUIRE(!paths.empty());
  CHECK(series_paths(c.out).size() == paths.size()); // the charts survive parsing
  for (const std::string& d : series_paths(c.out)) {
    CHECK(drawn(d));
  }

  // The CSP alone: the report's <head> with a raw <img> after it is refused by the browser.
  const fs::path csp = dir.path() / "csp.html";
  std::ofstream(csp) << html.substr(0, html.find("</head>")) << "</head><body><img src=\""
                     << canary.url("/csp") << "\"></body></html>\n";
  c = chromium(dir.path() / "profile", "--dump-dom", csp);
  REQUIRE(c.code == 0);
  CHECK_THAT(c.out, Catch::Contains("/csp"));

  // A screenshot of all the samples in one report: a real picture, unlike an empty page.
  const fs::path all = dir.path() / "samples.html";
  const Run a = analyze_bin({"report",
                             (fs::path(SOCKREWIND_SOURCE_DIR) / "samples").string(),
                             "--format",
                             "html",
                             "-o",
                             all.string()});
  REQUIRE(a.code == 0);
  const fs::path shot = dir.path() / "samples.png";
  c = chromium(dir.path() / "profile", "--screenshot=" + shot.string(), all);
  REQUIRE(c.code == 0);
  const fs::path empty = dir.path() / "empty.html";
  std::ofstream(empty) << "<!DOCTYPE html><html><body></body></html>\n";
  const fs::path blank = dir.path() / "empty.png";
  REQUIRE(chromium(dir.path() / "profile", "--screenshot=" + blank.string(), empty).code == 0);
  const std::string png = test::read_file(shot);
  const std::string blank_png = test::read_file(blank);
  REQUIRE(png.size() > 24);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(be32(png, 16) == 1200);
  CHECK(be32(png, 20) == 3000);
  CHECK(png.size() > 50'000);
  CHECK(png.size() > 5 * blank_png.size());
  if (const char* keep =
          std::getenv("SOCKREWIND_KEEP_SCREENSHOT")) { // NOLINT(concurrency-mt-unsafe)
    fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
  }

  // Nothing but the control was ever requested from the canary.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::vector<std::string> seen = canary.requests();
  std::string all_seen;
  for (const std::string& s : seen) {
    all_seen += s + "\n";
  }
  INFO(all_seen);
  CHECK(std::all_of(seen.begin(), seen.end(), [](const std::string& s) {
    return s.find(" /control ") != std::string::npos;
  }));
}
