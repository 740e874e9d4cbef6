// The configured repositories, opened on demand with their passphrase
// files. One place reads passphrases, so no route or executor handles one.
#ifndef HAVEN_APPLIANCE_REPOSITORIES_H_
#define HAVEN_APPLIANCE_REPOSITORIES_H_

#include <memory>
#include <string>

#include "appliance/config.h"
#include "repository/repository.h"

namespace haven::appliance {

class RepositoryCatalog {
 public:
  explicit RepositoryCatalog(const ApplianceConfig& config) : config_(config) {}
  // NotFound naming the repository when it is not configured; the core's
  // error (wrong passphrase, missing directory) otherwise.
  Result<std::unique_ptr<repository::Repository>> Open(
      std::string_view name, const repository::OpenOptions& options = {}) const;
  const RepositoryConfig* Find(std::string_view name) const {
    return config_.FindRepository(name);
  }
  const ApplianceConfig& config() const { return config_; }

 private:
  const ApplianceConfig& config_;
};

// The passphrase in `file` (first line, without its newline). The error
// names the file, never its content.
Result<std::string> ReadSecretFile(const std::string& file);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_REPOSITORIES_H_
