#include "appliance/repositories.h"

#include "base/file.h"

namespace haven::appliance {

const RepositoryConfig* ApplianceConfig::FindRepository(
    std::string_view name) const {
  for (const RepositoryConfig& r : repositories)
    if (r.name == name) return &r;
  return nullptr;
}

Result<std::string> ReadSecretFile(const std::string& file) {
  if (file.empty()) return InvalidArgument("no passphrase file is configured");
  auto text = ReadFile(file, 4096);
  if (!text.ok())
    return Status(text.status().code(), "cannot read the secret file " + file +
                                            ": " + text.status().message());
  std::string s(text->begin(), text->end());
  size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  if (!s.empty() && s.back() == '\r') s.pop_back();
  if (s.empty())
    return InvalidArgument("the secret file " + file + " is empty");
  return s;
}

Result<std::unique_ptr<repository::Repository>> RepositoryCatalog::Open(
    std::string_view name, const repository::OpenOptions& options) const {
  const RepositoryConfig* r = Find(name);
  if (!r)
    return NotFound("no repository called " + QuoteUntrusted(name) +
                    " is configured");
  HAVEN_ASSIGN_OR_RETURN(std::string pass, ReadSecretFile(r->password_file));
  auto repo = repository::Repository::Open(r->path, pass, options);
  if (!repo.ok())
    return Status(repo.status().code(), "repository " + r->name + " (" +
                                            r->path +
                                            "): " + repo.status().message());
  return repo;
}

}  // namespace haven::appliance
