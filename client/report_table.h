// FormatReportTable renders a Report as the plain-text tables `calib eval` prints: the
// metrics (beside their temperature- and Platt-scaled values when fitted), the fits,
// bootstrap intervals, the equal-width reliability bins (a table, then a text chart of
// the non-empty ones within 80 columns) and the warnings. Numbers are printed with 6
// decimals (the temperature and Platt parameters with 6 significant digits). Pure
// function, thread-safe.
#ifndef CALIB_CLIENT_REPORT_TABLE_H_
#define CALIB_CLIENT_REPORT_TABLE_H_

#include <string>

#include "calib/v1/calibration.pb.h"

namespace calib {

std::string FormatReportTable(const v1::Report& report);

}  // namespace calib

#endif  // CALIB_CLIENT_REPORT_TABLE_H_
