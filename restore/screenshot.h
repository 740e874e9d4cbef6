// A VM's screen as QEMU captures it (binary PPM, P6) made into a PNG that a
// browser or image viewer shows. The PPM is treated as untrusted: a header
// that does not parse, a size over 16384 x 16384 or fewer pixel bytes than
// it announces is InvalidArgument.
#ifndef HAVEN_RESTORE_SCREENSHOT_H_
#define HAVEN_RESTORE_SCREENSHOT_H_

#include <string>

#include "base/status.h"

namespace haven::restore {

Result<std::string> PpmToPng(const std::string& ppm);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_SCREENSHOT_H_
