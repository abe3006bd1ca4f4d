// `registrar --help` lists the server's own flags (abseil lists only those
// of a file named after the program unless told otherwise), and they are
// exactly the flags of the README's configuration table.

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/integration/own_server_test.h"

#ifndef REGISTRAR_BINARY_PATH
#error "REGISTRAR_BINARY_PATH must be defined to the server's path"
#endif
#ifndef REGISTRAR_README_PATH
#error "REGISTRAR_README_PATH must be defined to README.md's path"
#endif

namespace {

// Every `--name` matched by `re` (first group) in `text`, line by line.
std::set<std::string> Flags(const std::string& text,
                            const std::regex& line_re) {
  std::set<std::string> flags;
  std::istringstream in(text);
  static const std::regex flag_re("`--([a-z0-9_]+)`");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, line_re)) continue;
    const std::string cell = m[1].str();
    for (std::sregex_iterator it(cell.begin(), cell.end(), flag_re), end;
         it != end; ++it) {
      flags.insert((*it)[1].str());
    }
  }
  return flags;
}

TEST(HelpTest, HelpListsTheServerFlagsAsTheReadmeDocumentsThem) {
  const std::string help = registrar::testing::CommandOutput(
      std::string("'") + REGISTRAR_BINARY_PATH + "' --help 2>&1");
  EXPECT_EQ(help.find("No flags matched"), std::string::npos) << help;
  std::set<std::string> from_help;
  {
    static const std::regex help_flag(R"(^    --([a-z0-9_]+) \()");
    std::istringstream in(help);
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (std::regex_search(line, m, help_flag)) from_help.insert(m[1].str());
    }
  }
  ASSERT_GE(from_help.size(), 40u) << help;
  for (const char* flag : {"listen", "data_dir", "callers_file", "log_format",
                           "access_log", "max_watchers_per_tenant"}) {
    EXPECT_EQ(from_help.count(flag), 1u) << flag;
  }

  std::ifstream readme_file(REGISTRAR_README_PATH);
  std::stringstream readme;
  readme << readme_file.rdbuf();
  // Rows of the configuration table: "| `--flag`[, `--flag`] | ...".
  const std::set<std::string> from_readme =
      Flags(readme.str(), std::regex(R"(^\| (`--[^|]*) \|)"));
  ASSERT_GE(from_readme.size(), 40u);
  for (const std::string& f : from_help) {
    EXPECT_EQ(from_readme.count(f), 1u) << "--" << f << " not in the README";
  }
  for (const std::string& f : from_readme) {
    EXPECT_EQ(from_help.count(f), 1u) << "--" << f << " not in --help";
  }
}

}  // namespace
