// The havend.conf that `havend init` writes (setup.h, InitialConfigText).
#include "appliance/https_server.h"
#include "appliance/setup.h"

namespace haven::appliance {

std::string InitialConfigText(const ApplianceConfig& c) {
  std::string listen =
      c.listen.empty() ? "0.0.0.0:" + std::to_string(kDefaultPort) : c.listen;
  std::string t =
      "# havend's configuration, written by `havend init`. Every key is\n"
      "# described in /etc/haven/havend.conf.example and docs/appliance.md\n"
      "# (\"Configuration\"). havend reads this file when it starts:\n"
      "# `systemctl restart havend` after a change. Passphrases and\n"
      "# passwords are never written here, only the paths of the files\n"
      "# (mode 0600) that hold them.\n";
  t +=
      "\n[Server]\nListen=" + listen + "\nStateDirectory=" + c.state_dir + "\n";
  if (c.cert_file.empty())
    t += "# Certificate=/etc/haven/cert.pem  (default: a self-signed one\n"
         "# Key=/etc/haven/key.pem            in the state directory)\n";
  else
    t += "Certificate=" + c.cert_file + "\nKey=" + c.key_file + "\n";
  for (const RepositoryConfig& r : c.repositories)
    t += "\n[Repository " + r.name + "]\nPath=" + r.path +
         "\nPasswordFile=" + r.password_file + "\n";
  t += "\n[Libvirt]\nURI=" + c.libvirt_uri + "\n";
  t += "\n[Jobs]\nMaxJobs=" + std::to_string(c.max_jobs) +
       "\nMaxJobsPerRepository=" + std::to_string(c.max_jobs_per_repository) +
       "\n";
  t += "\n[Notify]\n"
       "# WebhookURL=https://hooks.example.org/haven\n"
       "# WebhookSecretFile=/etc/haven/webhook.key\n"
       "# SMTPURL=smtp://127.0.0.1:25\n"
       "# From=haven@example.org\n"
       "# To=ops@example.org\n"
       "# OnSuccess=no\n"
       "# DailyReport=08:00\n";
  return t;
}

}  // namespace haven::appliance
