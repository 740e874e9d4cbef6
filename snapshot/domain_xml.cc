#include "snapshot/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include <algorithm>
#include <memory>
#include <set>

namespace haven::snapshot {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XPathCtxFree {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjFree {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

constexpr size_t kMaxXml = 16 << 20;

void IgnoreGenericError(void*, const char*, ...) {}

Result<Doc> Parse(const std::string& xml, const char* what) {
  if (xml.size() > kMaxXml)
    return InvalidArgument(std::string(what) + " XML is larger than 16 MiB");
  // No network and no external entities or DTDs are loaded (entities
  // declared inside the document are expanded when text is read, as libxml2
  // does; it refuses entity loops). Errors are returned, not printed.
  static const bool quiet = [] {
    xmlSetGenericErrorFunc(nullptr, IgnoreGenericError);
    xmlSetStructuredErrorFunc(nullptr, [](void*, xmlErrorPtr) {});
    return true;
  }();
  (void)quiet;
  Doc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "x.xml",
                        nullptr,
                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                            XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS));
  if (!doc) {
    const xmlError* e = xmlGetLastError();
    return InvalidArgument(
        std::string(what) + " XML does not parse" +
        (e && e->message ? ": " + std::string(e->message) : std::string()));
  }
  return doc;
}

std::string Attr(xmlNode* n, const char* name) {
  if (!n) return "";
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (!v) return "";
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

std::string Text(xmlNode* n) {
  if (!n) return "";
  xmlChar* v = xmlNodeGetContent(n);
  if (!v) return "";
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

xmlNode* Child(xmlNode* n, const char* name) {
  for (xmlNode* c = n ? n->children : nullptr; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE &&
        xmlStrcmp(c->name, reinterpret_cast<const xmlChar*>(name)) == 0)
      return c;
  return nullptr;
}

std::vector<xmlNode*> Select(xmlDoc* doc, const char* xpath) {
  std::vector<xmlNode*> out;
  std::unique_ptr<xmlXPathContext, XPathCtxFree> ctx(xmlXPathNewContext(doc));
  if (!ctx) return out;
  std::unique_ptr<xmlXPathObject, XPathObjFree> r(xmlXPathEvalExpression(
      reinterpret_cast<const xmlChar*>(xpath), ctx.get()));
  if (!r || !r->nodesetval) return out;
  for (int i = 0; i < r->nodesetval->nodeNr; ++i)
    out.push_back(r->nodesetval->nodeTab[i]);
  return out;
}

// Device names are used in file names and NBD export names.
bool PlausibleName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) {
                       return (c >= 'a' && c <= 'z') ||
                              (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                              c == '.';
                     }) &&
         s[0] != '.';
}

}  // namespace

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      // Attribute values normalize these to spaces unless escaped.
      case '\t':
        out += "&#9;";
        break;
      case '\n':
        out += "&#10;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Result<DomainInfo> ParseDomainXml(const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "domain"));
  DomainInfo info;
  auto names = Select(doc.get(), "/domain/name");
  auto uuids = Select(doc.get(), "/domain/uuid");
  if (names.size() != 1 || uuids.size() != 1)
    return InvalidArgument("domain XML has no single <name> and <uuid>");
  info.name = Text(names[0]);
  info.uuid = Text(uuids[0]);
  if (info.name.empty() || info.uuid.size() != 36)
    return InvalidArgument("domain XML has an empty name or a malformed uuid");
  std::set<std::string> targets;
  for (xmlNode* d : Select(doc.get(), "/domain/devices/disk")) {
    DomainDisk disk;
    disk.type = Attr(d, "type");
    disk.device = Attr(d, "device");
    if (disk.device.empty()) disk.device = "disk";
    disk.target = Attr(Child(d, "target"), "dev");
    if (!PlausibleName(disk.target))
      return InvalidArgument("domain " + info.name +
                             ": a disk has a missing or odd target dev '" +
                             disk.target + "'");
    xmlNode* src = Child(d, "source");
    if (disk.type == "file")
      disk.path = Attr(src, "file");
    else if (disk.type == "block")
      disk.path = Attr(src, "dev");
    else if (disk.type == "volume") {
      disk.pool = Attr(src, "pool");
      disk.volume = Attr(src, "volume");
    }
    disk.format = Attr(Child(d, "driver"), "type");
    if (xmlNode* bs = Child(d, "backingStore"))
      disk.backing_format = Attr(Child(bs, "format"), "type");
    disk.readonly = Child(d, "readonly") != nullptr;
    if (disk.device == "cdrom" || disk.device == "floppy")
      disk.skip_reason = disk.device + " (removable media)";
    else if (disk.readonly)
      disk.skip_reason = "read-only disk";
    else if (disk.type == "network")
      disk.skip_reason = "network disk (" + Attr(src, "protocol") +
                         "): not readable from this host";
    else if (disk.type != "file" && disk.type != "block" &&
             disk.type != "volume")
      disk.skip_reason = "disk type '" + disk.type + "' is not supported";
    else if (src == nullptr || (disk.path.empty() && disk.volume.empty()))
      disk.skip_reason = "no source (empty drive)";
    if (!disk.pool.empty() && std::find(info.pools.begin(), info.pools.end(),
                                        disk.pool) == info.pools.end())
      info.pools.push_back(disk.pool);
    if (!targets.insert(disk.target).second)
      return InvalidArgument("domain " + info.name + ": two disks named " +
                             disk.target);
    info.disks.push_back(std::move(disk));
  }
  for (xmlNode* i : Select(doc.get(), "/domain/devices/interface")) {
    if (Attr(i, "type") != "network") continue;
    std::string net = Attr(Child(i, "source"), "network");
    if (!net.empty() && std::find(info.networks.begin(), info.networks.end(),
                                  net) == info.networks.end())
      info.networks.push_back(net);
  }
  if (auto nv = Select(doc.get(), "/domain/os/nvram"); !nv.empty())
    info.nvram = Text(nv[0]);
  for (xmlNode* s : Select(doc.get(), "/domain/seclabel[@model='dac']"))
    if (xmlNode* l = Child(s, "label")) info.dac_label = Text(l);
  return info;
}

Result<std::vector<std::string>> ParseCheckpointBitmapDisks(
    const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "checkpoint"));
  std::vector<std::string> out;
  for (xmlNode* d : Select(doc.get(), "/domaincheckpoint/disks/disk"))
    if (Attr(d, "checkpoint") == "bitmap") out.push_back(Attr(d, "name"));
  return out;
}

std::string ParseHostCpuModel(const std::string& capabilities_xml) {
  auto doc = Parse(capabilities_xml, "capabilities");
  if (!doc.ok()) return "";
  auto models = Select(doc->get(), "/capabilities/host/cpu/model");
  return models.empty() ? "" : Text(models[0]);
}

}  // namespace haven::snapshot
