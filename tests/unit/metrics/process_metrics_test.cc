#include "service/metrics/process_metrics.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/collectable.h"
#include "prometheus/text_serializer.h"
#include "service/metrics/build_info.h"
#include "service/metrics/metrics.h"
#include "tests/unit/metrics/http_get.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::registrar::testing::FindSample;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromSample;

std::vector<PromSample> Collect(const prometheus::Collectable& c) {
  return ParsePromText(prometheus::TextSerializer().Serialize(c.Collect()));
}

// A stat line as Linux prints it, with a command name holding ") (" and
// spaces; utime 250, stime 50, nice -5, starttime 1000, vsize 4096000,
// rss 300.
constexpr char kStat[] =
    "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 15 "
    "-5 8 0 1000 4096000 300 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 "
    "17 1 0 0 0 0 0";

TEST(ParseProcStatTest, ReadsFieldsAfterTheCommandName) {
  const std::optional<ProcStat> s = ParseProcStat(kStat, 100, 4096);
  ASSERT_TRUE(s.has_value());
  EXPECT_DOUBLE_EQ(s->cpu_seconds, 3.0);
  EXPECT_DOUBLE_EQ(s->start_seconds_after_boot, 10.0);
  EXPECT_EQ(s->virtual_bytes, 4096000u);
  EXPECT_EQ(s->resident_bytes, 300u * 4096u);
  EXPECT_EQ(s->nice, -5);
}

TEST(ParseProcStatTest, RejectsTruncatedOrGarbledText) {
  EXPECT_FALSE(ParseProcStat("", 100, 4096).has_value());
  EXPECT_FALSE(ParseProcStat("1234 (cmd) S 1 2 3", 100, 4096).has_value());
  std::string garbled = kStat;
  garbled.replace(garbled.find(" 250 "), 5, " x50 ");
  EXPECT_FALSE(ParseProcStat(garbled, 100, 4096).has_value());
  EXPECT_FALSE(ParseProcStat(kStat, 0, 4096).has_value());
}

TEST(ParseBootTimeTest, FindsTheBtimeLine) {
  EXPECT_EQ(ParseBootTime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocs 3\n"),
            1700000000.0);
  EXPECT_FALSE(ParseBootTime("cpu  1 2 3\n").has_value());
  EXPECT_FALSE(ParseBootTime("btime soon\n").has_value());
}

TEST(ProcessCollectableTest, ReportsThisProcess) {
  const auto collectable = MakeProcessCollectable();
  const std::vector<PromSample> before = Collect(*collectable);
  for (const char* name :
       {"process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
        "process_start_time_seconds"}) {
    EXPECT_TRUE(FindSample(before, name, {}).has_value()) << name;
  }
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(FindSample(before, "process_max_fds", {}),
            static_cast<double>(limit.rlim_cur));
  // Started before now, and after the machine booted.
  const double start = *FindSample(before, "process_start_time_seconds", {});
  EXPECT_LE(start, static_cast<double>(std::time(nullptr)) + 1);
  EXPECT_GT(start, 1.5e9);
  EXPECT_GT(*FindSample(before, "process_resident_memory_bytes", {}), 0);
  EXPECT_GE(*FindSample(before, "process_virtual_memory_bytes", {}),
            *FindSample(before, "process_resident_memory_bytes", {}));

  // Two more descriptors are counted as two more.
  const int a = open("/dev/null", O_RDONLY);
  const int b = open("/dev/null", O_RDONLY);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  const std::vector<PromSample> after = Collect(*collectable);
  close(a);
  close(b);
  EXPECT_EQ(*FindSample(after, "process_open_fds", {}),
            *FindSample(before, "process_open_fds", {}) + 2);

  // CPU time never goes back and matches getrusage to the clock tick.
  rusage usage{};
  ASSERT_EQ(getrusage(RUSAGE_SELF, &usage), 0);
  const double rusage_cpu =
      static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
      static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) /
          1e6;
  const double cpu = *FindSample(after, "process_cpu_seconds_total", {});
  EXPECT_GE(cpu, *FindSample(before, "process_cpu_seconds_total", {}));
  EXPECT_NEAR(cpu, rusage_cpu, 0.05);
}

TEST(DataDirCollectableTest, ReportsTheFilesystemOfTheDirectory) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  struct statvfs fs {};
  ASSERT_EQ(statvfs(dir.c_str(), &fs), 0);
  const std::vector<PromSample> s = Collect(*MakeDataDirCollectable(dir));
  EXPECT_EQ(
      FindSample(s, "registrar_data_dir_size_bytes", {}),
      static_cast<double>(fs.f_frsize) * static_cast<double>(fs.f_blocks));
  const std::optional<double> available =
      FindSample(s, "registrar_data_dir_available_bytes", {});
  ASSERT_TRUE(available.has_value());
  EXPECT_GT(*available, 0);
  EXPECT_LE(*available, *FindSample(s, "registrar_data_dir_size_bytes", {}));
  // A directory that does not exist: nothing rather than a wrong value.
  EXPECT_TRUE(Collect(*MakeDataDirCollectable("/no/such/dir/here")).empty());
}

TEST(BuildInfoTest, VersionAndRevisionAreExported) {
  EXPECT_EQ(BuildVersion(), REGISTRAR_EXPECTED_VERSION);
  const std::string revision(BuildRevision());
  EXPECT_TRUE(
      revision == "unknown" ||
      (revision.size() == 40 &&
       revision.find_first_not_of("0123456789abcdef") == std::string::npos))
      << revision;
  Metrics metrics;
  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
  EXPECT_EQ(FindSample(s, "registrar_build_info",
                       {{"version", REGISTRAR_EXPECTED_VERSION},
                        {"revision", revision}}),
            1);
}

TEST(MetricsProcessTest, ServedAtMetricsWithAddedFamilies) {
  Metrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
  metrics.AddCollectable(
      MakeDataDirCollectable(std::filesystem::temp_directory_path().string()));
  absl::StatusOr<testing::HttpResponse> response =
      testing::HttpGet("127.0.0.1", metrics.bound_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  std::vector<PromSample> s = ParsePromText(response->body);
  EXPECT_TRUE(FindSample(s, "process_open_fds", {}).has_value());
  EXPECT_TRUE(
      FindSample(s, "registrar_data_dir_available_bytes", {}).has_value());
  s = ParsePromText(metrics.ExpositionText());
  EXPECT_TRUE(FindSample(s, "registrar_data_dir_size_bytes", {}).has_value());
}

}  // namespace
}  // namespace registrar
