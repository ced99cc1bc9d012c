#include "bench/records.h"

#include <iostream>

#include "bench/bench_util.h"
#include "core/run/files.h"

namespace cdl::bench {
namespace {

std::string csvValue(const nlohmann::json& record, const std::string& column) {
  const nlohmann::json* v = &record;
  size_t at = 0;
  while (true) {
    const size_t dot = column.find('.', at);
    const std::string key = column.substr(at, dot == std::string::npos ? dot : dot - at);
    if (!v->is_object() || !v->contains(key)) return "";
    v = &(*v)[key];
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  if (v->is_null()) return "NaN";
  if (v->is_string()) return csvField(v->get<std::string>());
  return v->dump();
}

}  // namespace

std::vector<CsvColumn> plainColumns(const std::vector<std::string>& keys) {
  std::vector<CsvColumn> columns;
  for (const std::string& k : keys) columns.push_back({k, ""});
  return columns;
}

std::string csvText(const std::vector<nlohmann::json>& records,
                    const std::vector<CsvColumn>& columns) {
  std::string out;
  for (size_t c = 0; c < columns.size(); ++c) out += (c ? "," : "") + csvField(columns[c].header);
  out += "\n";
  for (const nlohmann::json& r : records) {
    for (size_t c = 0; c < columns.size(); ++c) {
      const CsvColumn& col = columns[c];
      out += (c ? "," : "") + csvValue(r, col.key.empty() ? col.header : col.key);
    }
    out += "\n";
  }
  return out;
}

void emitRecords(const RecordSink& sink, const std::vector<nlohmann::json>& records,
                 const std::vector<CsvColumn>& columns,
                 const std::function<void(const std::string& png)>& plot) {
  if (sink.json) std::cout << nlohmann::json(records).dump(2) << std::endl;
  if (!sink.csv.empty()) core::writeFileAtomically(sink.csv, csvText(records, columns));
  if (!sink.plot.empty()) plot(sink.plot);
}

}  // namespace cdl::bench
