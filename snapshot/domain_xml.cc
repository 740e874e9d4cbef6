#include "snapshot/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <libxml/xmlstring.h>
#include <libxml/xpath.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

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

// Rewriting keeps blank text (keep_blanks) so that what it does not touch is
// written back as it was, layout included.
Result<Doc> Parse(const std::string& xml, const char* what,
                  bool keep_blanks = false) {
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
  Doc doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "x.xml", nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                        (keep_blanks ? 0 : XML_PARSE_NOBLANKS)));
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

const xmlChar* ToXml(const char* s) {
  return reinterpret_cast<const xmlChar*>(s);
}

// An element of libvirt's vocabulary, which has no namespace: like libvirt's
// own XPath lookups, <qemu:source> is not <source>.
bool IsElement(const xmlNode* n, const char* name) {
  return n && n->type == XML_ELEMENT_NODE && n->ns == nullptr &&
         xmlStrEqual(n->name, ToXml(name));
}

xmlNode* Child(xmlNode* n, const char* name) {
  for (xmlNode* c = n ? n->children : nullptr; c; c = c->next)
    if (IsElement(c, name)) return c;
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

// Untrusted text in an error message: quoted, at most 64 bytes, control
// characters shown as '?'.
std::string Quote(const std::string& s) {
  constexpr size_t kShown = 64;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += c < 0x20 || c == 0x7f ? '?' : s[i];
  }
  return out + (s.size() > kShown ? "'..." : "'");
}

// The <source> attribute naming what an interface of `type` connects to.
const char* InterfaceSourceAttr(const std::string& type) {
  if (type == "network") return "network";
  if (type == "bridge") return "bridge";
  if (type == "direct") return "dev";
  return nullptr;
}

// /domain/os/nvram as a path: its text, or the file of the newer
// <nvram type='file'><source file=.../></nvram> form.
std::string NvramPath(xmlDoc* doc) {
  auto nv = Select(doc, "/domain/os/nvram");
  if (nv.empty()) return "";
  if (xmlNode* src = Child(nv[0], "source")) return Attr(src, "file");
  return Text(nv[0]);
}

Result<DomainInfo> ReadDomain(xmlDoc* doc) {
  DomainInfo info;
  auto names = Select(doc, "/domain/name");
  auto uuids = Select(doc, "/domain/uuid");
  if (names.size() != 1 || uuids.size() != 1)
    return InvalidArgument("domain XML has no single <name> and <uuid>");
  info.name = Text(names[0]);
  info.uuid = Text(uuids[0]);
  if (info.name.empty() || info.uuid.size() != 36)
    return InvalidArgument("domain XML has an empty name or a malformed uuid");
  std::set<std::string> targets;
  for (xmlNode* d : Select(doc, "/domain/devices/disk")) {
    DomainDisk disk;
    disk.type = Attr(d, "type");
    disk.device = Attr(d, "device");
    if (disk.device.empty()) disk.device = "disk";
    disk.target = Attr(Child(d, "target"), "dev");
    if (!PlausibleName(disk.target))
      return InvalidArgument("domain " + info.name +
                             ": a disk has a missing or odd target dev " +
                             Quote(disk.target));
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
  for (xmlNode* i : Select(doc, "/domain/devices/interface")) {
    DomainInterface iface;
    iface.type = Attr(i, "type");
    iface.mac = Attr(Child(i, "mac"), "address");
    if (const char* attr = InterfaceSourceAttr(iface.type))
      iface.source = Attr(Child(i, "source"), attr);
    if (iface.type == "network" && !iface.source.empty() &&
        std::find(info.networks.begin(), info.networks.end(), iface.source) ==
            info.networks.end())
      info.networks.push_back(iface.source);
    info.interfaces.push_back(std::move(iface));
  }
  info.nvram = NvramPath(doc);
  if (auto e = Select(doc, "/domain/devices/emulator"); !e.empty())
    info.emulator = Text(e[0]);
  if (auto l = Select(doc, "/domain/os/loader"); !l.empty())
    info.loader = Text(l[0]);
  for (xmlNode* s : Select(doc, "/domain/seclabel[@model='dac']"))
    if (xmlNode* l = Child(s, "label")) info.dac_label = Text(l);
  for (xmlNode* m : Select(doc, "/domain/metadata"))
    for (xmlNode* c = m->children; c; c = c->next)
      if (c->type == XML_ELEMENT_NODE && c->ns && c->ns->href &&
          xmlStrEqual(c->ns->href, ToXml(kRestoreMetadataNs)) &&
          xmlStrEqual(c->name, ToXml("restore")))
        info.restored_from = Attr(c, "snapshot");
  return info;
}

// ------------------------------------------------------------- rewriting

struct XmlBufferFree {
  void operator()(xmlBuffer* b) const { xmlBufferFree(b); }
};

Status CheckDocument(xmlDoc* doc, const char* root_name) {
  const std::string what = root_name;
  // libvirt never writes a DOCTYPE. One here could only carry entities,
  // which a rewrite would pass on for libvirt to expand.
  if (doc->intSubset || doc->extSubset)
    return InvalidArgument(what +
                           " XML has a DOCTYPE, which libvirt never "
                           "writes; refusing it and its entities");
  xmlNode* root = xmlDocGetRootElement(doc);
  if (!IsElement(root, root_name))
    return InvalidArgument(
        what + " XML has the root element " +
        Quote(root ? reinterpret_cast<const char*>(root->name) : "") +
        ", not <" + what + ">");
  return OkStatus();
}

bool HasControlChar(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// After HasControlChar, so that a NUL does not end the check early.
bool ValidUtf8(const std::string& s) {
  return xmlCheckUTF8(ToXml(s.c_str())) == 1;
}

// A domain or network name. libvirt itself refuses '/' and newlines (names
// become file names); the length, other control characters and a leading
// '.' are Haven's rule for names it makes file names from.
Status CheckLibvirtName(const std::string& name, const std::string& what) {
  const char* wrong = nullptr;
  if (name.empty() || name.size() > 64)
    wrong = "must be 1 to 64 bytes long";
  else if (HasControlChar(name))
    wrong = "has a control character";
  else if (name.find('/') != std::string::npos)
    wrong = "has a '/'";
  else if (name[0] == '.')
    wrong = "starts with '.'";
  else if (!ValidUtf8(name))
    wrong = "is not UTF-8";
  if (wrong) return InvalidArgument(what + " " + Quote(name) + " " + wrong);
  return OkStatus();
}

// A Linux interface name (dev_valid_name): under IFNAMSIZ (16) bytes, not
// "." or "..", no '/', ':' or white space.
Status CheckBridgeName(const std::string& name, const std::string& what) {
  const char* wrong = nullptr;
  if (name.empty() || name.size() > 15)
    wrong = "must be 1 to 15 bytes long (a Linux interface name)";
  else if (HasControlChar(name) ||
           name.find_first_of("/: ") != std::string::npos)
    wrong = "has a '/', ':', space or control character";
  else if (name == "." || name == "..")
    wrong = "is '.' or '..'";
  else if (!ValidUtf8(name))
    wrong = "is not UTF-8";
  if (wrong) return InvalidArgument(what + " " + Quote(name) + " " + wrong);
  return OkStatus();
}

Status CheckPath(const std::string& path, const std::string& what) {
  const char* wrong = nullptr;
  if (path.empty() || path[0] != '/')
    wrong = "is not an absolute path";
  else if (path.size() > 4095)
    wrong = "is longer than 4095 bytes";
  else if (HasControlChar(path))
    wrong = "has a control character";
  else if (!ValidUtf8(path))
    wrong = "is not UTF-8";
  if (wrong) return InvalidArgument(what + " " + Quote(path) + " " + wrong);
  return OkStatus();
}

Status CheckFormat(const std::string& format, const std::string& what) {
  // QEMU reads vhdx, but libvirt 9 has no such driver type: defining the VM
  // fails with "unknown driver format value 'vhdx'".
  if (format == "vhdx")
    return InvalidArgument(what +
                           " format vhdx: libvirt has no driver type "
                           "'vhdx' and would not define the VM; "
                           "restore it as raw or qcow2");
  if (format != "raw" && format != "qcow2")
    return InvalidArgument(what + " format " + Quote(format) +
                           " is not raw or qcow2");
  return OkStatus();
}

// A MAC address as libvirt reads one (virMacAddrParse: six groups of one
// or two hex digits joined by ':'), as a 48-bit number.
std::optional<uint64_t> ParseMac(const std::string& s) {
  uint64_t mac = 0;
  size_t i = 0;
  for (int group = 0; group < 6; ++group) {
    if (group > 0 && (i >= s.size() || s[i++] != ':')) return std::nullopt;
    int digits = 0, value = 0;
    for (; i < s.size() && digits < 2 &&
           std::isxdigit(static_cast<unsigned char>(s[i]));
         ++i, ++digits)
      value = value * 16 + (std::isdigit(static_cast<unsigned char>(s[i]))
                                ? s[i] - '0'
                                : std::tolower(s[i]) - 'a' + 10);
    if (digits == 0) return std::nullopt;
    mac = mac << 8 | static_cast<uint64_t>(value);
  }
  if (i != s.size()) return std::nullopt;
  return mac;
}

// A MAC in QEMU's locally administered 52:54:00 range from `next` that is
// not in `used` (and is then added to it).
Result<std::string> NewMac(const std::function<uint32_t()>& next,
                           std::set<uint64_t>& used) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint64_t mac = 0x525400000000 | (next() & 0xffffff);
    if (!used.insert(mac).second) continue;
    char text[18];
    std::snprintf(text, sizeof text, "52:54:00:%02x:%02x:%02x",
                  static_cast<unsigned>(mac >> 16 & 0xff),
                  static_cast<unsigned>(mac >> 8 & 0xff),
                  static_cast<unsigned>(mac & 0xff));
    return std::string(text);
  }
  return Internal("no unused MAC address found in 52:54:00:xx:xx:xx");
}

// A version 4 (random) UUID from `next`.
std::string NewUuid(const std::function<uint32_t()>& next) {
  uint8_t b[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t v = next();
    for (int k = 0; k < 4; ++k) b[i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char text[37];
  std::snprintf(text, sizeof text,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                "%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
                b[10], b[11], b[12], b[13], b[14], b[15]);
  return text;
}

bool IsBlankText(const xmlNode* n) {
  return n && n->type == XML_TEXT_NODE && xmlIsBlankNode(n);
}

// Removes `n` with the indentation before it.
void RemoveNode(xmlNode* n) {
  if (IsBlankText(n->prev)) {
    xmlNode* blank = n->prev;
    xmlUnlinkNode(blank);
    xmlFreeNode(blank);
  }
  xmlUnlinkNode(n);
  xmlFreeNode(n);
}

// Removes the element children of `n` for which `drop` is true.
template <typename Pred>
void RemoveChildren(xmlNode* n, Pred drop) {
  for (xmlNode* c = n->children; c;) {
    xmlNode* next = c->next;
    if (c->type == XML_ELEMENT_NODE && drop(c)) RemoveNode(c);
    c = next;
  }
}

// Removes every attribute called `name`, whatever its namespace: libvirt
// (xmlGetProp) may read a prefixed one as well.
void RemoveAttr(xmlNode* n, const char* name) {
  for (xmlAttr* a = n->properties; a;) {
    xmlAttr* next = a->next;
    if (xmlStrEqual(a->name, ToXml(name))) xmlRemoveProp(a);
    a = next;
  }
}

// Sets an attribute (the value is taken literally, not as XML), replacing
// a plain one in place and dropping prefixed ones of the same name.
Status SetAttr(xmlNode* n, const char* name, const std::string& value) {
  for (xmlAttr* a = n->properties; a;) {
    xmlAttr* next = a->next;
    if (a->ns && xmlStrEqual(a->name, ToXml(name))) xmlRemoveProp(a);
    a = next;
  }
  if (!xmlSetProp(n, ToXml(name), ToXml(value.c_str())))
    return Internal(std::string("setting XML attribute ") + name);
  return OkStatus();
}

// Replaces the content of `n` with the text `value`, taken literally.
void SetText(xmlNode* n, const std::string& value) {
  xmlNodeSetContent(n, nullptr);
  xmlNodeAddContentLen(n, ToXml(value.c_str()), static_cast<int>(value.size()));
}

// A new child element of `parent`, placed before its first element and
// indented like it.
Result<xmlNode*> AddElement(xmlNode* parent, const char* name) {
  xmlNode* n = xmlNewDocNode(parent->doc, nullptr, ToXml(name), nullptr);
  if (!n) return Internal(std::string("creating XML element ") + name);
  xmlNode* first = parent->children;
  while (first && first->type != XML_ELEMENT_NODE) first = first->next;
  if (!first) {
    xmlAddChild(parent, n);
    return n;
  }
  xmlAddPrevSibling(first, n);
  if (IsBlankText(n->prev))
    if (xmlNode* indent = xmlNewDocText(parent->doc, n->prev->content))
      xmlAddPrevSibling(first, indent);
  return n;
}

Result<std::string> Serialize(xmlDoc* doc, const std::string& what) {
  std::unique_ptr<xmlBuffer, XmlBufferFree> buf(xmlBufferCreate());
  xmlSaveCtxt* save =
      buf ? xmlSaveToBuffer(buf.get(), "UTF-8", XML_SAVE_NO_DECL) : nullptr;
  if (!save) return Internal("writing " + what + " XML: out of memory");
  const long written = xmlSaveDoc(save, doc);
  if (xmlSaveClose(save) < 0 || written < 0)
    return Internal("writing " + what + " XML failed");
  const auto size = static_cast<size_t>(xmlBufferLength(buf.get()));
  // Escaping can make the text longer than what was read.
  if (size > kMaxXml)
    return InvalidArgument(what + " XML would be larger than 16 MiB");
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf.get())),
                     size);
}

Status CheckDomainRewrite(const DomainRewrite& rw) {
  if (!rw.name.empty())
    HAVEN_RETURN_IF_ERROR(CheckLibvirtName(rw.name, "new domain name"));
  std::set<std::string> targets;
  for (const DiskRewrite& d : rw.disks) {
    const std::string what = "disk " + Quote(d.target);
    if (!targets.insert(d.target).second)
      return InvalidArgument(what + " is rewritten twice");
    HAVEN_RETURN_IF_ERROR(CheckPath(d.path, what + " path"));
    HAVEN_RETURN_IF_ERROR(CheckFormat(d.format, what));
    if (!d.nbd_socket.empty()) {
      HAVEN_RETURN_IF_ERROR(CheckPath(d.nbd_socket, what + " NBD socket"));
      if (d.format != "qcow2")
        return InvalidArgument(what + ": an NBD-backed overlay is qcow2");
      if (d.nbd_export.empty() || d.nbd_export.size() > 255 ||
          std::any_of(d.nbd_export.begin(), d.nbd_export.end(),
                      [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
        return InvalidArgument(what + ": implausible NBD export name");
    }
  }
  for (const auto& [from, to] : rw.network_map) {
    if (from.empty())
      return InvalidArgument("the network map has an empty name to replace");
    HAVEN_RETURN_IF_ERROR(
        CheckLibvirtName(to, "network " + Quote(from) + " maps to"));
  }
  if (!rw.nvram_path.empty())
    HAVEN_RETURN_IF_ERROR(CheckPath(rw.nvram_path, "NVRAM path"));
  if (!rw.serial_file.empty())
    HAVEN_RETURN_IF_ERROR(CheckPath(rw.serial_file, "serial console file"));
  return OkStatus();
}

// One serial port into a file; a VGA screen when there is none.
Status SerialToFile(xmlDoc* doc, const std::string& file) {
  for (xmlNode* n : Select(doc, "/domain/devices/serial")) RemoveNode(n);
  for (xmlNode* n : Select(doc, "/domain/devices/console")) RemoveNode(n);
  auto devices = Select(doc, "/domain/devices");
  if (devices.empty()) return InvalidArgument("the domain has no <devices>");
  xmlNode* serial = xmlNewChild(devices[0], nullptr, ToXml("serial"), nullptr);
  xmlNode* src =
      serial ? xmlNewChild(serial, nullptr, ToXml("source"), nullptr) : nullptr;
  xmlNode* target =
      src ? xmlNewChild(serial, nullptr, ToXml("target"), nullptr) : nullptr;
  if (!target) return Internal("creating the <serial> element");
  HAVEN_RETURN_IF_ERROR(SetAttr(serial, "type", "file"));
  HAVEN_RETURN_IF_ERROR(SetAttr(src, "path", file));
  HAVEN_RETURN_IF_ERROR(SetAttr(target, "port", "0"));
  if (Select(doc, "/domain/devices/video").empty()) {
    xmlNode* video = xmlNewChild(devices[0], nullptr, ToXml("video"), nullptr);
    xmlNode* model =
        video ? xmlNewChild(video, nullptr, ToXml("model"), nullptr) : nullptr;
    if (!model) return Internal("creating the <video> element");
    HAVEN_RETURN_IF_ERROR(SetAttr(model, "type", "vga"));
  }
  return OkStatus();
}

// Points a disk at a restored flat image file. Of <source>, only what a
// file source can hold and does not describe the old storage is kept:
// startupPolicy and <seclabel>.
Status RewriteDisk(xmlNode* disk, const DiskRewrite& r,
                   const std::string& where) {
  if (Attr(disk, "device") == "lun")
    return InvalidArgument(where + ": disk " + Quote(r.target) +
                           " is a SCSI LUN (device='lun'), which libvirt "
                           "passes through only from a block device or "
                           "iSCSI, not from a restored image file");
  HAVEN_RETURN_IF_ERROR(SetAttr(disk, "type", "file"));
  xmlNode* src = Child(disk, "source");
  if (!src) {
    HAVEN_ASSIGN_OR_RETURN(src, AddElement(disk, "source"));
  }
  for (xmlAttr* a = src->properties; a;) {
    xmlAttr* next = a->next;
    if (a->ns || !xmlStrEqual(a->name, ToXml("startupPolicy")))
      xmlRemoveProp(a);
    a = next;
  }
  HAVEN_RETURN_IF_ERROR(SetAttr(src, "file", r.path));
  RemoveChildren(src, [](xmlNode* c) { return !IsElement(c, "seclabel"); });
  xmlNode* driver = Child(disk, "driver");
  if (!driver) {
    HAVEN_ASSIGN_OR_RETURN(driver, AddElement(disk, "driver"));
    HAVEN_RETURN_IF_ERROR(SetAttr(driver, "name", "qemu"));
  }
  HAVEN_RETURN_IF_ERROR(SetAttr(driver, "type", r.format));
  RemoveChildren(disk, [](xmlNode* c) {
    return IsElement(c, "backingStore") || IsElement(c, "mirror") ||
           IsElement(c, "encryption") || IsElement(c, "auth");
  });
  if (!r.nbd_socket.empty()) {
    HAVEN_ASSIGN_OR_RETURN(xmlNode * bs, AddElement(disk, "backingStore"));
    HAVEN_RETURN_IF_ERROR(SetAttr(bs, "type", "network"));
    xmlNode* fmt = xmlNewChild(bs, nullptr, ToXml("format"), nullptr);
    xmlNode* bsrc = xmlNewChild(bs, nullptr, ToXml("source"), nullptr);
    xmlNode* h =
        bsrc ? xmlNewChild(bsrc, nullptr, ToXml("host"), nullptr) : nullptr;
    if (!fmt || !h) return Internal("creating the NBD <backingStore>");
    HAVEN_RETURN_IF_ERROR(SetAttr(fmt, "type", "raw"));
    HAVEN_RETURN_IF_ERROR(SetAttr(bsrc, "protocol", "nbd"));
    HAVEN_RETURN_IF_ERROR(SetAttr(bsrc, "name", r.nbd_export));
    HAVEN_RETURN_IF_ERROR(SetAttr(h, "transport", "unix"));
    HAVEN_RETURN_IF_ERROR(SetAttr(h, "socket", r.nbd_socket));
  }
  return OkStatus();
}

Status RewriteDisks(xmlDoc* doc, const std::vector<DiskRewrite>& disks,
                    const std::string& where) {
  if (disks.empty()) return OkStatus();
  std::unordered_map<std::string, xmlNode*> by_target;
  for (xmlNode* d : Select(doc, "/domain/devices/disk"))
    by_target.emplace(Attr(Child(d, "target"), "dev"), d);
  for (const DiskRewrite& r : disks) {
    auto it = by_target.find(r.target);
    if (it == by_target.end())
      return NotFound(where + " has no disk with target " + Quote(r.target));
    HAVEN_RETURN_IF_ERROR(RewriteDisk(it->second, r, where));
  }
  return OkStatus();
}

// For an agent's XML (DomainRewrite::untrusted): no <emulator>, and no
// disk the restore does not write names a host path. Fills out's
// emptied_disks and removed_disks.
Status DropUnwritten(xmlDoc* doc, const DomainRewrite& rw,
                     RewrittenDomain& out) {
  for (xmlNode* e : Select(doc, "/domain/devices/emulator")) RemoveNode(e);
  std::set<std::string> written;
  for (const DiskRewrite& r : rw.disks) written.insert(r.target);
  for (xmlNode* d : Select(doc, "/domain/devices/disk")) {
    const std::string target = Attr(Child(d, "target"), "dev");
    if (written.count(target)) continue;
    const std::string device = Attr(d, "device");
    if (device != "cdrom" && device != "floppy") {
      RemoveNode(d);
      out.removed_disks.push_back(target);
      continue;
    }
    HAVEN_RETURN_IF_ERROR(SetAttr(d, "type", "file"));
    RemoveChildren(d, [](xmlNode* c) {
      return IsElement(c, "source") || IsElement(c, "backingStore") ||
             IsElement(c, "mirror") || IsElement(c, "auth") ||
             IsElement(c, "encryption");
    });
    out.emptied_disks.push_back(target);
  }
  return OkStatus();
}

// What an interface's source becomes under `map` (its type is network or
// bridge); `source` if the map does not name it.
const std::string& Mapped(const std::map<std::string, std::string>& map,
                          const std::string& type, const std::string& source) {
  if (type != "network" && type != "bridge") return source;
  auto it = map.find(source);
  return it == map.end() ? source : it->second;
}

Status MapNetworks(xmlDoc* doc, const std::map<std::string, std::string>& map,
                   const std::string& where) {
  if (map.empty()) return OkStatus();
  for (xmlNode* i : Select(doc, "/domain/devices/interface")) {
    const std::string type = Attr(i, "type");
    xmlNode* src = Child(i, "source");
    const char* attr = InterfaceSourceAttr(type);
    if (!src || !attr) continue;
    const std::string old = Attr(src, attr);
    const std::string& to = Mapped(map, type, old);
    if (to == old) continue;
    if (type == "bridge")
      HAVEN_RETURN_IF_ERROR(
          CheckBridgeName(to, where + ": bridge " + Quote(old) + " maps to"));
    HAVEN_RETURN_IF_ERROR(SetAttr(src, attr, to));
    // A port on the old network and that network's bridge.
    if (type == "network") {
      RemoveAttr(src, "portid");
      RemoveAttr(src, "bridge");
    }
  }
  return OkStatus();
}

Status SetNvram(xmlDoc* doc, const std::string& path,
                const std::string& where) {
  auto nv = Select(doc, "/domain/os/nvram");
  if (nv.empty())
    return InvalidArgument(where + " has no <os><nvram> to point at " +
                           Quote(path));
  if (xmlNode* src = Child(nv[0], "source")) {
    HAVEN_RETURN_IF_ERROR(SetAttr(nv[0], "type", "file"));
    for (xmlAttr* a = src->properties; a;) {
      xmlAttr* next = a->next;
      xmlRemoveProp(a);
      a = next;
    }
    return SetAttr(src, "file", path);
  }
  SetText(nv[0], path);
  return OkStatus();
}

// Gives the domain a new UUID and new MACs (DomainRewrite::new_identity);
// fills out.uuid and out.macs.
Status NewIdentity(xmlDoc* doc, const DomainRewrite& rw, RewrittenDomain& out) {
  std::function<uint32_t()> next;
  std::optional<std::random_device> device;
  std::optional<std::mt19937> seeded;
  try {
    if (rw.identity_seed.empty()) {
      device.emplace();
      next = [&] { return static_cast<uint32_t>((*device)()); };
    } else {
      // std::seed_seq and std::mt19937 are fully specified by the standard:
      // the same seed gives the same numbers with any conforming library.
      std::vector<uint32_t> words(rw.identity_seed.begin(),
                                  rw.identity_seed.end());
      std::seed_seq seq(words.begin(), words.end());
      seeded.emplace(seq);
      next = [&] { return static_cast<uint32_t>((*seeded)()); };
    }
    out.uuid = NewUuid(next);
  } catch (const std::exception& e) {  // std::random_device has no source
    return Internal(std::string("no random numbers for a new identity: ") +
                    e.what());
  }
  auto uuids = Select(doc, "/domain/uuid");
  if (uuids.empty()) {
    HAVEN_ASSIGN_OR_RETURN(xmlNode * u,
                           AddElement(xmlDocGetRootElement(doc), "uuid"));
    uuids.push_back(u);
  }
  SetText(uuids[0], out.uuid);
  // libvirt refuses a sysinfo UUID that differs from the domain's.
  for (xmlNode* e : Select(doc, "/domain/sysinfo/system/entry[@name='uuid']"))
    RemoveNode(e);
  // Empty: libvirt generates a new VM generation ID.
  for (xmlNode* g : Select(doc, "/domain/genid")) SetText(g, "");
  auto interfaces = Select(doc, "/domain/devices/interface");
  std::set<uint64_t> used;
  for (xmlNode* i : interfaces)
    if (auto mac = ParseMac(Attr(Child(i, "mac"), "address")))
      used.insert(*mac);
  for (const auto& m : rw.avoid_macs)
    if (auto mac = ParseMac(m)) used.insert(*mac);
  for (xmlNode* i : interfaces) {
    xmlNode* mac = Child(i, "mac");
    std::string old = Attr(mac, "address");
    if (!mac) {
      HAVEN_ASSIGN_OR_RETURN(mac, AddElement(i, "mac"));
    }
    HAVEN_ASSIGN_OR_RETURN(std::string fresh, NewMac(next, used));
    HAVEN_RETURN_IF_ERROR(SetAttr(mac, "address", fresh));
    out.macs.emplace_back(std::move(old), std::move(fresh));
  }
  return OkStatus();
}

// <metadata><haven:restore xmlns:haven=NS snapshot=ID/></metadata>, an
// earlier haven:restore element replaced.
Status SetRestoreMetadata(xmlDoc* doc, const std::string& snapshot_id) {
  xmlNode* root = xmlDocGetRootElement(doc);
  xmlNode* meta = Child(root, "metadata");
  if (!meta) {
    HAVEN_ASSIGN_OR_RETURN(meta, AddElement(root, "metadata"));
  }
  for (xmlNode* c = meta->children; c;) {
    xmlNode* next = c->next;
    if (c->type == XML_ELEMENT_NODE && c->ns && c->ns->href &&
        xmlStrEqual(c->ns->href, ToXml(kRestoreMetadataNs)))
      RemoveNode(c);
    c = next;
  }
  xmlNode* r = xmlNewChild(meta, nullptr, ToXml("restore"), nullptr);
  if (!r) return Internal("creating the restore metadata element");
  xmlNs* ns = xmlNewNs(r, ToXml(kRestoreMetadataNs), ToXml("haven"));
  if (!ns) return Internal("creating the restore metadata namespace");
  xmlSetNs(r, ns);
  return SetAttr(r, "snapshot", snapshot_id);
}

// Reads the written XML back as libvirt will, so that what was asked for
// is what libvirt gets, whatever libxml2 did.
Status VerifyDomainRewrite(const RewrittenDomain& out, const DomainInfo& before,
                           const DomainRewrite& rw) {
  auto wrong = [](const std::string& what) {
    return Internal("the rewritten domain XML reads back with " + what);
  };
  auto doc = Parse(out.xml, "rewritten domain");
  if (!doc.ok()) return wrong("an error: " + doc.status().message());
  auto read = ReadDomain(doc->get());
  if (!read.ok()) return wrong("an error: " + read.status().message());
  const DomainInfo& after = *read;
  if (!rw.name.empty() && after.name != rw.name) return wrong("another name");
  if (rw.new_identity && after.uuid != out.uuid) return wrong("another <uuid>");
  if (!rw.restored_from.empty() && after.restored_from != rw.restored_from)
    return wrong("another restore metadata");
  std::unordered_map<std::string, const DomainDisk*> disks;
  for (const DomainDisk& d : after.disks) disks.emplace(d.target, &d);
  for (const DiskRewrite& r : rw.disks) {
    auto it = disks.find(r.target);
    if (it == disks.end() || it->second->type != "file" ||
        it->second->path != r.path || it->second->format != r.format ||
        it->second->backing_format != (r.nbd_socket.empty() ? "" : "raw"))
      return wrong("disk " + Quote(r.target) + " not as asked");
  }
  if (after.interfaces.size() != before.interfaces.size())
    return wrong("another number of interfaces");
  for (size_t i = 0; i < after.interfaces.size(); ++i) {
    const DomainInterface& was = before.interfaces[i];
    if (after.interfaces[i].source !=
        Mapped(rw.network_map, was.type, was.source))
      return wrong("interface " + std::to_string(i) + " on another network");
    if (rw.new_identity && after.interfaces[i].mac != out.macs[i].second)
      return wrong("interface " + std::to_string(i) + " with another MAC");
  }
  if (!rw.nvram_path.empty() && after.nvram != rw.nvram_path)
    return wrong("another NVRAM path");
  if (rw.untrusted) {
    if (!after.emulator.empty()) return wrong("an <emulator>");
    if (after.disks.size() != before.disks.size() - out.removed_disks.size())
      return wrong("another number of disks");
    for (const std::string& t : out.emptied_disks) {
      auto it = disks.find(t);
      if (it == disks.end() || !it->second->path.empty())
        return wrong("drive " + Quote(t) + " not empty");
    }
  }
  return OkStatus();
}

Result<NetworkInfo> ReadNetwork(xmlDoc* doc) {
  HAVEN_RETURN_IF_ERROR(CheckDocument(doc, "network"));
  NetworkInfo info;
  auto names = Select(doc, "/network/name");
  if (names.size() != 1)
    return InvalidArgument("network XML has no single <name>");
  info.name = Text(names[0]);
  HAVEN_RETURN_IF_ERROR(CheckLibvirtName(info.name, "network name"));
  const std::string where = "network " + Quote(info.name);
  auto uuids = Select(doc, "/network/uuid");
  if (uuids.size() > 1) return InvalidArgument(where + " has two <uuid>s");
  if (!uuids.empty()) {
    info.uuid = Text(uuids[0]);
    if (info.uuid.size() != 36)
      return InvalidArgument(where + " has a malformed uuid " +
                             Quote(info.uuid));
  }
  // libvirt reads the first <bridge> and the first <mac>.
  if (auto b = Select(doc, "/network/bridge"); !b.empty()) {
    info.bridge = Attr(b[0], "name");
    if (!info.bridge.empty())
      HAVEN_RETURN_IF_ERROR(CheckBridgeName(info.bridge, where + ": bridge"));
  }
  if (auto m = Select(doc, "/network/mac"); !m.empty()) {
    info.mac = Attr(m[0], "address");
    if (!info.mac.empty() && !ParseMac(info.mac))
      return InvalidArgument(where + " has a malformed MAC address " +
                             Quote(info.mac));
  }
  auto forward = Select(doc, "/network/forward");
  info.forward = forward.empty() ? "isolated" : Attr(forward[0], "mode");
  if (info.forward.empty()) info.forward = "nat";
  return info;
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
  return ReadDomain(doc.get());
}

Result<std::vector<std::string>> ParseCheckpointBitmapDisks(
    const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "checkpoint"));
  std::vector<std::string> out;
  for (xmlNode* d : Select(doc.get(), "/domaincheckpoint/disks/disk"))
    if (Attr(d, "checkpoint") == "bitmap") out.push_back(Attr(d, "name"));
  return out;
}

std::string ParseHostDacLabel(const std::string& capabilities_xml,
                              const std::string& virt_type) {
  auto doc = Parse(capabilities_xml, "capabilities");
  if (!doc.ok()) return "";
  for (xmlNode* m : Select(doc->get(), "/capabilities/host/secmodel")) {
    if (Text(Child(m, "model")) != "dac") continue;
    for (xmlNode* c = m->children; c; c = c->next)
      if (IsElement(c, "baselabel") && Attr(c, "type") == virt_type)
        return Text(c);
  }
  return "";
}

std::string ParseHostCpuModel(const std::string& capabilities_xml) {
  auto doc = Parse(capabilities_xml, "capabilities");
  if (!doc.ok()) return "";
  auto models = Select(doc->get(), "/capabilities/host/cpu/model");
  return models.empty() ? "" : Text(models[0]);
}

Result<RewrittenDomain> RewriteDomainXml(const std::string& xml,
                                         const DomainRewrite& rewrite) {
  HAVEN_RETURN_IF_ERROR(CheckDomainRewrite(rewrite));
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "domain", /*keep_blanks=*/true));
  HAVEN_RETURN_IF_ERROR(CheckDocument(doc.get(), "domain"));
  // Checked and read back as ParseDomainXml reads it (blank text dropped),
  // so that a rewrite succeeds exactly when Haven can read what it wrote.
  HAVEN_ASSIGN_OR_RETURN(DomainInfo before, ParseDomainXml(xml));
  const std::string where = "domain " + Quote(before.name);
  if (!rewrite.name.empty())
    SetText(Select(doc.get(), "/domain/name")[0], rewrite.name);
  HAVEN_RETURN_IF_ERROR(RewriteDisks(doc.get(), rewrite.disks, where));
  HAVEN_RETURN_IF_ERROR(MapNetworks(doc.get(), rewrite.network_map, where));
  if (!rewrite.nvram_path.empty())
    HAVEN_RETURN_IF_ERROR(SetNvram(doc.get(), rewrite.nvram_path, where));
  RewrittenDomain out;
  if (rewrite.untrusted)
    HAVEN_RETURN_IF_ERROR(DropUnwritten(doc.get(), rewrite, out));
  if (rewrite.new_identity)
    HAVEN_RETURN_IF_ERROR(NewIdentity(doc.get(), rewrite, out));
  if (!rewrite.restored_from.empty())
    HAVEN_RETURN_IF_ERROR(SetRestoreMetadata(doc.get(), rewrite.restored_from));
  if (!rewrite.serial_file.empty())
    HAVEN_RETURN_IF_ERROR(SerialToFile(doc.get(), rewrite.serial_file));
  HAVEN_ASSIGN_OR_RETURN(out.xml, Serialize(doc.get(), "rewritten domain"));
  HAVEN_RETURN_IF_ERROR(VerifyDomainRewrite(out, before, rewrite));
  return out;
}

Result<NetworkInfo> ParseNetworkXml(const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "network"));
  return ReadNetwork(doc.get());
}

Result<std::string> RewriteNetworkXml(const std::string& xml,
                                      const NetworkRewrite& rewrite) {
  HAVEN_ASSIGN_OR_RETURN(NetworkInfo before, ParseNetworkXml(xml));
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "network", /*keep_blanks=*/true));
  if (rewrite.drop_uuid)
    for (xmlNode* u : Select(doc.get(), "/network/uuid")) RemoveNode(u);
  if (rewrite.drop_bridge_name)
    for (xmlNode* b : Select(doc.get(), "/network/bridge"))
      RemoveAttr(b, "name");
  if (rewrite.drop_mac)
    for (xmlNode* m : Select(doc.get(), "/network/mac")) RemoveNode(m);
  HAVEN_ASSIGN_OR_RETURN(std::string out,
                         Serialize(doc.get(), "rewritten network"));
  // Read back, as for a domain.
  auto after = ParseNetworkXml(out);
  if (!after.ok())
    return Internal("the rewritten network XML does not read back: " +
                    after.status().message());
  if (after->name != before.name ||
      (rewrite.drop_uuid && !after->uuid.empty()) ||
      (rewrite.drop_bridge_name && !after->bridge.empty()) ||
      (rewrite.drop_mac && !after->mac.empty()))
    return Internal("the rewritten network XML of " + Quote(before.name) +
                    " reads back unlike what was asked");
  return out;
}

Result<PoolInfo> ParsePoolXml(const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "storage pool"));
  HAVEN_RETURN_IF_ERROR(CheckDocument(doc.get(), "pool"));
  PoolInfo info;
  auto names = Select(doc.get(), "/pool/name");
  if (names.size() != 1)
    return InvalidArgument("storage pool XML has no single <name>");
  info.name = Text(names[0]);
  info.type = Attr(xmlDocGetRootElement(doc.get()), "type");
  if (auto p = Select(doc.get(), "/pool/target/path"); !p.empty())
    info.path = Text(p[0]);
  return info;
}

// ------------------------------------------------------------- untrusted
// What a host agent's XML may not ask of the host that defines it. Each
// problem is a phrase naming the element, what it is, and what a point from
// an agent may therefore not do; untrusted values in it are Quote()d.
namespace {

constexpr char kReachDevices[] = "reach the target host's devices";
constexpr char kReachFiles[] = "reach the target host's files";
constexpr char kRunPrograms[] = "run programs on the target host";
constexpr char kUnconfined[] =
    "run QEMU outside the confinement libvirt gives every VM";
constexpr char kReachHost[] =
    "reach the target host's sockets, ports or network interfaces";

class Problems {
 public:
  void Add(const std::string& element, const std::string& what,
           const char* why) {
    std::string p = "asks for " + element + " (" + what +
                    "): a point from an agent may not " + why;
    if (seen_.insert(p).second) list_.push_back(std::move(p));
  }
  std::vector<std::string> Take() { return std::move(list_); }

 private:
  std::set<std::string> seen_;
  std::vector<std::string> list_;
};

std::string Name(const xmlNode* n) {
  return reinterpret_cast<const char*>(n->name);
}

// <name type='value'> with the value quoted (it is the XML's).
std::string Tag(const std::string& name, const char* attr = nullptr,
                const std::string& value = "") {
  if (!attr) return "<" + name + ">";
  return "<" + name + " " + attr + "=" + Quote(value) + ">";
}

// An absolute path without a ".." component under one of `dirs`.
bool Under(const std::string& path, std::initializer_list<const char*> dirs) {
  if (path.find("/../") != std::string::npos ||
      (path.size() >= 3 && path.compare(path.size() - 3, 3, "/..") == 0))
    return false;
  for (const char* d : dirs)
    if (path.rfind(d, 0) == 0) return true;
  return false;
}

// Elements of libvirt's driver-specific namespaces (qemu:commandline,
// qemu:capabilities, qemu:override, lxc:namespace, xen:commandline, ...)
// anywhere but in <metadata>, which libvirt keeps without reading.
void NamespacedElements(xmlNode* n, const char* ns_prefix, Problems& out) {
  for (xmlNode* c = n->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (c->parent && c->parent->parent &&
        c->parent->parent->type == XML_DOCUMENT_NODE &&
        IsElement(c, "metadata"))
      continue;
    if (c->ns && c->ns->href &&
        xmlStrncmp(c->ns->href, ToXml(ns_prefix),
                   xmlStrlen(ToXml(ns_prefix))) == 0) {
      const std::string prefix =
          c->ns->prefix ? reinterpret_cast<const char*>(c->ns->prefix) : "";
      out.Add("<" + (prefix.empty() ? "" : prefix + ":") + Name(c) + ">",
              "options handed to the hypervisor or its helpers as they are, "
              "namespace " +
                  Quote(reinterpret_cast<const char*>(c->ns->href)),
              kRunPrograms);
      continue;
    }
    NamespacedElements(c, ns_prefix, out);
  }
}

// A character device's backend (<serial>, <console>, <channel>,
// <parallel>, and the passthrough of <smartcard>, <rng>): a pty, a console
// of libvirt's or QEMU's own, or a socket libvirt names itself.
void CharDevice(xmlNode* dev, const std::string& element, Problems& out) {
  static const std::set<std::string> kSafe = {
      "pty",      "vc",        "null",         "stdio",
      "spicevmc", "spiceport", "qemu-vdagent", "dbus"};
  const std::string type = Attr(dev, "type");
  for (xmlNode* c = dev->children; c; c = c->next)
    if (IsElement(c, "log") && !Attr(c, "file").empty())
      out.Add(Tag(element) + "<log file=" + Quote(Attr(c, "file")) + ">",
              "the device's output written to a host file", kReachFiles);
  if (kSafe.count(type)) return;
  if (type == "unix") {  // without a path libvirt names the socket itself
    for (xmlNode* c = dev->children; c; c = c->next)
      if (IsElement(c, "source") && !Attr(c, "path").empty())
        out.Add(Tag(element, "type", type) + " on " + Quote(Attr(c, "path")),
                "a host socket path", kReachHost);
    return;
  }
  std::string path;
  for (xmlNode* c = dev->children; c; c = c->next)
    if (IsElement(c, "source")) path = Attr(c, "path");
  out.Add(
      Tag(element, "type", type) + (path.empty() ? "" : " on " + Quote(path)),
      type == "tcp" || type == "udp" ? "a network socket of the host"
                                     : "a host file, device, pipe or socket",
      type == "tcp" || type == "udp" ? kReachHost : kReachFiles);
}

// A <disk>: the only host paths it may name are files the restore writes.
void Disk(xmlNode* d, const std::set<std::string>& restored_files,
          Problems& out) {
  const std::string target = Attr(Child(d, "target"), "dev");
  const std::string where = "<disk> " + Quote(target);
  xmlNode* src = Child(d, "source");
  if (src) {
    const std::string file = Attr(src, "file");
    const bool restored = Attr(d, "type") == "file" && !file.empty() &&
                          restored_files.count(file) > 0;
    bool names_something = false;
    for (xmlAttr* a = src->properties; a; a = a->next)
      if (!xmlStrEqual(a->name, ToXml("startupPolicy")) &&
          !xmlStrEqual(a->name, ToXml("index")))
        names_something = true;
    for (xmlNode* c = src->children; c; c = c->next)
      if (c->type == XML_ELEMENT_NODE && !IsElement(c, "seclabel"))
        names_something = true;
    if (names_something && !restored) {
      std::string named = Attr(src, "file");
      for (const char* a : {"dev", "dir", "volume", "name", "path"})
        if (named.empty()) named = Attr(src, a);
      out.Add(where + (named.empty() ? "" : " on " + Quote(named)),
              "a source the restore does not write", kReachFiles);
    }
  }
  for (xmlNode* c = d->children; c; c = c->next)
    if ((IsElement(c, "backingStore") || IsElement(c, "mirror")) &&
        (Child(c, "source") || !Attr(c, "file").empty()))
      out.Add(where + " " + Tag(Name(c)), "an image the restore does not write",
              kReachFiles);
}

void Interface(xmlNode* i, Problems& out) {
  static const std::set<std::string> kHostSide = {
      "hostdev", "vdpa",   "vhostuser", "ethernet",
      "server",  "client", "mcast",     "udp"};
  const std::string type = Attr(i, "type");
  if (kHostSide.count(type))
    out.Add(Tag("interface", "type", type),
            type == "hostdev" || type == "vdpa"
                ? "a host network device passed to the guest"
                : "a host tap device, socket or port",
            type == "hostdev" || type == "vdpa" ? kReachDevices : kReachHost);
  for (xmlNode* c = i->children; c; c = c->next) {
    if (IsElement(c, "script") || IsElement(c, "downscript"))
      out.Add("<interface>" + Tag(Name(c)) + " " + Quote(Attr(c, "path")),
              "a host program run for the interface", kRunPrograms);
    if (IsElement(c, "backend") &&
        (!Attr(c, "tap").empty() || !Attr(c, "vhost").empty()))
      out.Add("<interface><backend>", "host device paths for the network",
              kReachDevices);
  }
}

void Devices(xmlNode* devices, const std::set<std::string>& restored_files,
             Problems& out) {
  for (xmlNode* c = devices ? devices->children : nullptr; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || c->ns) continue;
    const std::string name = Name(c);
    const std::string type = Attr(c, "type");
    if (name == "emulator") {
      out.Add("<emulator> " + Quote(Text(c)),
              "the program libvirt runs as the VM", kRunPrograms);
    } else if (name == "hostdev") {
      out.Add("<hostdev>", "a host PCI, USB, SCSI or mediated device",
              kReachDevices);
    } else if (name == "filesystem") {
      out.Add("<filesystem>", "a host folder shared with the guest",
              kReachFiles);
    } else if (name == "redirdev") {
      out.Add("<redirdev>", "a USB device redirected into the guest",
              kReachDevices);
    } else if (name == "shmem") {
      out.Add("<shmem>", "memory shared with the host's processes",
              kReachDevices);
    } else if (name == "lease") {
      out.Add("<lease>", "a lock file on the host", kReachFiles);
    } else if (name == "serial" || name == "parallel" || name == "console" ||
               name == "channel") {
      CharDevice(c, name, out);
    } else if (name == "disk") {
      Disk(c, restored_files, out);
    } else if (name == "interface") {
      Interface(c, out);
    } else if (name == "input" && (type == "passthrough" || type == "evdev")) {
      out.Add(Tag(name, "type", type), "a host input device", kReachDevices);
    } else if (name == "tpm") {
      xmlNode* b = Child(c, "backend");
      const std::string bt = Attr(b, "type");
      if (b && (bt != "emulator" || Child(b, "source") || Child(b, "device")))
        out.Add("<tpm><backend type=" + Quote(bt) + ">",
                "the host's TPM or a host file", kReachDevices);
    } else if (name == "smartcard") {
      const std::string mode = Attr(c, "mode");
      if (mode == "passthrough")
        CharDevice(c, name, out);
      else
        out.Add(Tag(name, "mode", mode),
                "the host's smartcard reader or certificate folder",
                kReachDevices);
    } else if (name == "rng") {
      xmlNode* b = Child(c, "backend");
      const std::string model = Attr(b, "model");
      if (model == "egd") {
        CharDevice(b, "rng", out);
      } else if (model == "random") {
        const std::string dev = Text(b);
        if (!dev.empty() && dev != "/dev/random" && dev != "/dev/urandom" &&
            dev != "/dev/hwrng")
          out.Add("<rng><backend model='random'> " + Quote(dev),
                  "a host file or device read by the guest", kReachFiles);
      }
    } else if (name == "memory") {
      xmlNode* s = Child(c, "source");
      if (s && Child(s, "path"))
        out.Add(Tag(name, "model", Attr(c, "model")) + " on " +
                    Quote(Text(Child(s, "path"))),
                "a host file or device as guest memory", kReachFiles);
    } else if (name == "audio") {
      if (type != "none" && type != "spice" && type != "dbus")
        out.Add(Tag(name, "type", type), "the host's sound or a host file",
                kReachDevices);
    } else if (name == "graphics") {
      bool host_side = type == "sdl" || type == "desktop" ||
                       !Attr(c, "socket").empty() || !Attr(c, "xauth").empty();
      for (xmlNode* g = c->children; g; g = g->next)
        if ((IsElement(g, "listen") && !Attr(g, "socket").empty()) ||
            (IsElement(g, "gl") && !Attr(g, "rendernode").empty()))
          host_side = true;
      if (host_side)
        out.Add(Tag(name, "type", type),
                "a host display, socket path or GPU render node",
                kReachDevices);
    }
  }
}

// <os>: files read into the guest, and firmware from the host's firmware
// folders only.
void Os(xmlDoc* doc, Problems& out) {
  for (const char* what : {"kernel", "initrd", "dtb", "shim"})
    for (xmlNode* n : Select(doc, (std::string("/domain/os/") + what).c_str()))
      out.Add(Tag(what) + " " + Quote(Text(n)),
              "a host file loaded into the guest", kReachFiles);
  for (xmlNode* n : Select(doc, "/domain/os/acpi/table"))
    out.Add("<acpi><table> " + Quote(Text(n)),
            "a host file loaded into the guest", kReachFiles);
  for (xmlNode* n : Select(doc, "/domain/sysinfo//entry[@file]"))
    out.Add("<sysinfo><entry file=" + Quote(Attr(n, "file")) + ">",
            "a host file loaded into the guest", kReachFiles);
  const std::initializer_list<const char*> firmware = {"/usr/share/"};
  for (xmlNode* n : Select(doc, "/domain/os/loader"))
    if (const std::string p = Text(n); !p.empty() && !Under(p, firmware))
      out.Add("<loader> " + Quote(p), "firmware from outside /usr/share",
              kReachFiles);
  for (xmlNode* n : Select(doc, "/domain/os/nvram"))
    if (const std::string t = Attr(n, "template");
        !t.empty() && !Under(t, firmware))
      out.Add("<nvram template=" + Quote(t) + ">",
              "firmware variables from outside /usr/share", kReachFiles);
}

void SecLabels(xmlDoc* doc, Problems& out) {
  for (xmlNode* s : Select(doc, "/domain/seclabel")) {
    const std::string type = Attr(s, "type");
    const std::string model = Attr(s, "model");
    const std::string which =
        model.empty() ? std::string() : " model=" + Quote(model);
    if (type == "none" || type == "static")
      out.Add("<seclabel type=" + Quote(type) + which + ">",
              type == "none" ? "no confinement of QEMU"
                             : "a label of its own choosing for QEMU",
              kUnconfined);
    if (Attr(s, "relabel") == "no")
      out.Add("<seclabel relabel='no'" + which + ">",
              "files not labelled for this VM alone", kUnconfined);
  }
}

}  // namespace

Result<std::vector<std::string>> UntrustedDomainProblems(
    const std::string& xml, const std::set<std::string>& restored_files) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "domain"));
  HAVEN_RETURN_IF_ERROR(CheckDocument(doc.get(), "domain"));
  Problems out;
  NamespacedElements(reinterpret_cast<xmlNode*>(doc.get()),
                     "http://libvirt.org/schemas/domain/", out);
  SecLabels(doc.get(), out);
  Os(doc.get(), out);
  for (xmlNode* d : Select(doc.get(), "/domain/devices"))
    Devices(d, restored_files, out);
  return out.Take();
}

Result<std::vector<std::string>> UntrustedNetworkProblems(
    const std::string& xml) {
  HAVEN_ASSIGN_OR_RETURN(Doc doc, Parse(xml, "network"));
  HAVEN_RETURN_IF_ERROR(CheckDocument(doc.get(), "network"));
  Problems out;
  NamespacedElements(reinterpret_cast<xmlNode*>(doc.get()),
                     "http://libvirt.org/schemas/network/", out);
  for (xmlNode* f : Select(doc.get(), "/network/forward")) {
    const std::string mode = Attr(f, "mode");
    if (!mode.empty() && mode != "nat" && mode != "route" && mode != "open")
      out.Add("<forward mode=" + Quote(mode) + ">",
              "guests put on a host network interface", kReachHost);
    if (!Attr(f, "dev").empty())
      out.Add("<forward dev=" + Quote(Attr(f, "dev")) + ">",
              "a host network interface", kReachHost);
    for (xmlNode* c = f->children; c; c = c->next)
      if (IsElement(c, "interface") || IsElement(c, "pf") ||
          IsElement(c, "address"))
        out.Add("<forward><" + Name(c) +
                    (Attr(c, "dev").empty() ? ""
                                            : " dev=" + Quote(Attr(c, "dev"))) +
                    ">",
                "a host network interface or device", kReachHost);
  }
  for (xmlNode* t : Select(doc.get(), "/network/ip/tftp"))
    out.Add("<tftp root=" + Quote(Attr(t, "root")) + ">",
            "a host folder served to the guests", kReachFiles);
  for (xmlNode* b : Select(doc.get(), "/network/bridge"))
    if (!Attr(b, "zone").empty())
      out.Add("<bridge zone=" + Quote(Attr(b, "zone")) + ">",
              "a firewall zone of the host", kReachHost);
  return out.Take();
}

}  // namespace haven::snapshot
