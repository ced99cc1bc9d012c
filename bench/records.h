#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cdl::bench {

// Note [Bench records]
// Every cdl-bench subcommand that measures rows yields records, one JSON object a row, and hands
// them to one sink: --json prints them as one JSON array on stdout (in place of the table),
// --csv writes the subcommand's columns to a file (atomically), --plot draws them into a PNG. A
// CSV column has a header and a key, where "a.b" is the record's r["a"]["b"]; a string is one CSV
// field (csvField), a number is written as JSON writes it, a null is NaN and an absent value an
// empty field.
struct RecordSink {
  bool json = false;
  std::string csv;   // also write the columns as CSV here
  std::string plot;  // also draw the records into this PNG
};

struct CsvColumn {
  std::string header;
  std::string key;  // empty: the header
};

// Columns whose headers are their keys.
std::vector<CsvColumn> plainColumns(const std::vector<std::string>& keys);

// The records as CSV: a header line of `columns`, then a line a record.
std::string csvText(const std::vector<nlohmann::json>& records,
                    const std::vector<CsvColumn>& columns);

// Hands the records to the sink (call it on one rank): JSON on stdout, the CSV file, and
// plot(png) when sink.plot is set.
void emitRecords(const RecordSink& sink, const std::vector<nlohmann::json>& records,
                 const std::vector<CsvColumn>& columns,
                 const std::function<void(const std::string& png)>& plot);

}  // namespace cdl::bench
