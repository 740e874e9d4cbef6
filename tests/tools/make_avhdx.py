#!/usr/bin/env python3
"""Makes a differencing VHDX (what Hyper-V names .avhdx) on top of a parent.

qemu-img cannot create differencing VHDX files, so the tests build them here,
written from the specification ([MS-VHDX] v20160714: sections 2.1 file
layout, 2.2 headers and region table, 2.5 BAT, 2.6 metadata region and
parent locator). The result is a child that Hyper-V would accept: a log
region that needs no replay, a BAT with sector bitmap entries interleaved,
and a parent locator naming the parent and its DataWriteGuid.

  make_avhdx.py PARENT CHILD [--write OFFSET:LENGTH:BYTE]...

Each --write fills LENGTH bytes at OFFSET of the virtual disk with BYTE
(sizes take k/M/G suffixes, and must be multiples of the logical sector
size). A payload block entirely covered by writes is stored
FULLY_PRESENT; a block written in part is stored PARTIALLY_PRESENT, with the
sector bitmap marking the written sectors, and its other sectors filled with
0xEE filler that a reader must not return (they come from the parent).
Blocks never written are NOT_PRESENT: read from the parent.

Options for negative tests: --parent-path records a path verbatim in every
locator key, --parent-linkage records another parent DataWriteGuid,
--data-write-guid fixes the child's own DataWriteGuid (to build a loop).

Python 3 standard library only.
"""

import argparse
import os
import struct
import sys
import uuid

KIB = 1024
MIB = 1024 * KIB

# Section 2.1: fixed offsets of the header section.
FILE_TYPE_OFFSET = 0
HEADER_OFFSETS = (64 * KIB, 128 * KIB)
REGION_TABLE_OFFSETS = (192 * KIB, 256 * KIB)
HEADER_SIZE = 4 * KIB
REGION_TABLE_SIZE = 64 * KIB
METADATA_TABLE_SIZE = 64 * KIB

# Layout chosen for the child (every region 1 MiB aligned, section 2.1).
LOG_OFFSET = 1 * MIB
LOG_LENGTH = 1 * MIB
METADATA_OFFSET = 2 * MIB
METADATA_LENGTH = 1 * MIB
BAT_OFFSET = 3 * MIB

# Section 2.2.3.1: region GUIDs.
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

# Section 2.6.2: metadata item GUIDs.
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
VIRTUAL_DISK_ID = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
VHDX_LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")

# Section 2.6.1.2: metadata table entry flags.
IS_VIRTUAL_DISK = 0x2
IS_REQUIRED = 0x4

# Section 2.5.1: BAT entry states (low 3 bits), file offset in MiB above bit 20.
PAYLOAD_BLOCK_NOT_PRESENT = 0
PAYLOAD_BLOCK_FULLY_PRESENT = 6
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
SB_BLOCK_PRESENT = 6
SECTOR_BITMAP_BLOCK_SIZE = 1 * MIB  # section 2.5.2: 2^23 sectors per block

FILLER = 0xEE  # sectors of a partial block that the bitmap leaves to the parent


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), the checksum of headers and region tables."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def with_checksum(block):
    """Stores the CRC-32C of `block` (checksum field zeroed) at offset 4."""
    block = bytearray(block)
    block[4:8] = b"\0\0\0\0"
    block[4:8] = struct.pack("<I", crc32c(block))
    return bytes(block)


def parse_size(text):
    text = text.strip()
    scale = {"k": KIB, "K": KIB, "m": MIB, "M": MIB, "g": 1024 * MIB,
             "G": 1024 * MIB}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    return int(text, 0) * scale


class Parent:
    """What the child needs from its parent: geometry and DataWriteGuid."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read(4 * MIB)
            if data[:8] != b"vhdxfile":
                sys.exit(f"{path}: not a VHDX file")
            best = None
            for off in HEADER_OFFSETS:
                h = data[off:off + HEADER_SIZE]
                if h[:4] != b"head" or with_checksum(h) != h:
                    continue
                seq = struct.unpack_from("<Q", h, 8)[0]
                if best is None or seq > best[0]:
                    best = (seq, h)
            if best is None:
                sys.exit(f"{path}: no valid header")
            self.data_write_guid = uuid.UUID(bytes_le=best[1][32:48])
            metadata_offset = None
            for off in REGION_TABLE_OFFSETS:
                r = data[off:off + REGION_TABLE_SIZE]
                if r[:4] != b"regi" or with_checksum(r) != r:
                    continue
                count = struct.unpack_from("<I", r, 8)[0]
                for i in range(count):
                    e = r[16 + 32 * i:16 + 32 * (i + 1)]
                    if uuid.UUID(bytes_le=e[:16]) == METADATA_REGION:
                        metadata_offset = struct.unpack_from("<Q", e, 16)[0]
                break
            if metadata_offset is None:
                sys.exit(f"{path}: no metadata region")
            f.seek(metadata_offset)
            table = f.read(METADATA_TABLE_SIZE)
            if table[:8] != b"metadata":
                sys.exit(f"{path}: bad metadata table")
            count = struct.unpack_from("<H", table, 10)[0]
            items = {}
            for i in range(count):
                e = table[32 + 32 * i:32 + 32 * (i + 1)]
                item_offset, item_length = struct.unpack_from("<II", e, 16)
                f.seek(metadata_offset + item_offset)
                items[uuid.UUID(bytes_le=e[:16])] = f.read(item_length)
        self.virtual_size = struct.unpack("<Q", items[VIRTUAL_DISK_SIZE])[0]
        self.logical_sector = struct.unpack("<I", items[LOGICAL_SECTOR_SIZE])[0]
        self.physical_sector = struct.unpack("<I",
                                             items[PHYSICAL_SECTOR_SIZE])[0]


def parent_locator(entries):
    """Section 2.6.2.6: header, key/value entries, then UTF-16LE strings."""
    header_size = 20 + 12 * len(entries)
    table = bytearray()
    strings = bytearray()
    for key, value in entries:
        k = key.encode("utf-16-le")
        v = value.encode("utf-16-le")
        key_offset = header_size + len(strings)
        strings += k
        value_offset = header_size + len(strings)
        strings += v
        table += struct.pack("<IIHH", key_offset, value_offset, len(k), len(v))
    header = VHDX_LOCATOR_TYPE.bytes_le + struct.pack("<HH", 0, len(entries))
    return bytes(header + table + strings)


def metadata_region(items):
    """Section 2.6.1: the table (64 KiB) then the items it points at."""
    region = bytearray(METADATA_LENGTH)
    region[0:8] = b"metadata"
    struct.pack_into("<HH", region, 8, 0, len(items))
    offset = METADATA_TABLE_SIZE
    for i, (item_id, flags, payload) in enumerate(items):
        struct.pack_into("<16sIIII", region, 32 + 32 * i, item_id.bytes_le,
                         offset, len(payload), flags, 0)
        region[offset:offset + len(payload)] = payload
        offset += (len(payload) + 7) & ~7
    return bytes(region)


def header(seq, data_write_guid):
    """Section 2.2.2; LogGuid zero: nothing to replay."""
    h = bytearray(HEADER_SIZE)
    h[0:4] = b"head"
    struct.pack_into("<Q16s16s16sHHIQ", h, 8, seq, uuid.uuid4().bytes_le,
                     data_write_guid.bytes_le, bytes(16), 0, 1, LOG_LENGTH,
                     LOG_OFFSET)
    return with_checksum(h)


def region_table(bat_length):
    r = bytearray(REGION_TABLE_SIZE)
    r[0:4] = b"regi"
    struct.pack_into("<II", r, 8, 2, 0)
    struct.pack_into("<16sQII", r, 16, BAT_REGION.bytes_le, BAT_OFFSET,
                     bat_length, 1)
    struct.pack_into("<16sQII", r, 48, METADATA_REGION.bytes_le,
                     METADATA_OFFSET, METADATA_LENGTH, 1)
    return with_checksum(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("parent")
    ap.add_argument("child")
    ap.add_argument("--write", action="append", default=[],
                    metavar="OFFSET:LENGTH:BYTE")
    ap.add_argument("--block-size", default="1M",
                    help="payload block size (1M..256M, power of two)")
    ap.add_argument("--parent-path", default=None,
                    help="record this path verbatim in every locator key")
    ap.add_argument("--parent-linkage", default=None,
                    help="parent DataWriteGuid to record (default: the real)")
    ap.add_argument("--data-write-guid", default=None,
                    help="the child's own DataWriteGuid (default: random)")
    args = ap.parse_args()

    parent = Parent(args.parent)
    block_size = parse_size(args.block_size)
    sector = parent.logical_sector
    if block_size < MIB or block_size > 256 * MIB or block_size & (
            block_size - 1):
        sys.exit("block size must be a power of two in 1M..256M")
    sectors_per_block = block_size // sector
    # Section 2.5: chunk ratio = 2^23 * logical sector size / block size.
    chunk_ratio = (1 << 23) * sector // block_size
    payload_blocks = -(-parent.virtual_size // block_size)
    bitmap_blocks = -(-payload_blocks // chunk_ratio)
    total_entries = bitmap_blocks * (chunk_ratio + 1)  # HasParent layout
    bat_length = -(-total_entries * 8 // MIB) * MIB

    # Block number -> (data, per-sector written flags).
    blocks = {}
    for spec in args.write:
        if spec.count(":") != 2:
            sys.exit(f"--write {spec}: expected OFFSET:LENGTH:BYTE")
        off_s, len_s, byte_s = spec.split(":")
        off, length, byte = parse_size(off_s), parse_size(len_s), int(byte_s, 0)
        if off % sector or length % sector or off + length > parent.virtual_size:
            sys.exit(f"--write {spec}: not sector aligned or past the end")
        pos = off
        while pos < off + length:
            b = pos // block_size
            data, written = blocks.setdefault(
                b, (bytearray([FILLER]) * block_size,
                    [False] * sectors_per_block))
            in_block = pos - b * block_size
            n = min(off + length - pos, block_size - in_block)
            data[in_block:in_block + n] = bytes([byte]) * n
            for s in range(in_block // sector, (in_block + n) // sector):
                written[s] = True
            pos += n

    bat = bytearray(bat_length)
    bitmaps = {}  # chunk -> bytearray(1 MiB)
    next_offset = BAT_OFFSET + bat_length
    placed = []  # (file offset, bytes)
    for b in sorted(blocks):
        data, written = blocks[b]
        chunk = b // chunk_ratio
        if all(written):
            state = PAYLOAD_BLOCK_FULLY_PRESENT
        else:
            state = PAYLOAD_BLOCK_PARTIALLY_PRESENT
            bm = bitmaps.setdefault(chunk, bytearray(SECTOR_BITMAP_BLOCK_SIZE))
            first = (b % chunk_ratio) * sectors_per_block
            for s, w in enumerate(written):
                if w:  # bit n of the bitmap is sector n, least significant first
                    bm[(first + s) // 8] |= 1 << ((first + s) % 8)
        struct.pack_into("<Q", bat, 8 * (b + b // chunk_ratio),
                         (next_offset // MIB) << 20 | state)
        placed.append((next_offset, bytes(data)))
        next_offset += -(-block_size // MIB) * MIB
    for chunk in sorted(bitmaps):
        index = chunk * (chunk_ratio + 1) + chunk_ratio
        struct.pack_into("<Q", bat, 8 * index,
                         (next_offset // MIB) << 20 | SB_BLOCK_PRESENT)
        placed.append((next_offset, bytes(bitmaps[chunk])))
        next_offset += SECTOR_BITMAP_BLOCK_SIZE

    name = os.path.basename(args.parent)
    linkage = uuid.UUID(args.parent_linkage) if args.parent_linkage \
        else parent.data_write_guid
    if args.parent_path is not None:
        paths = [args.parent_path] * 3
    else:
        paths = [".\\" + name,
                 "\\\\?\\Volume{6e1a6ea6-1c4f-4a3c-9a4e-0d1f7a3b2c5d}"
                 "\\Hyper-V\\" + name,
                 "C:\\Hyper-V\\Virtual Hard Disks\\" + name]
    locator = parent_locator([
        ("parent_linkage", "{" + str(linkage) + "}"),
        ("relative_path", paths[0]),
        ("volume_path", paths[1]),
        ("absolute_win32_path", paths[2]),
    ])
    has_parent = 0x2  # File Parameters flags: HasParent
    metadata = metadata_region([
        (FILE_PARAMETERS, IS_REQUIRED, struct.pack("<II", block_size,
                                                   has_parent)),
        (VIRTUAL_DISK_SIZE, IS_VIRTUAL_DISK | IS_REQUIRED,
         struct.pack("<Q", parent.virtual_size)),
        (VIRTUAL_DISK_ID, IS_VIRTUAL_DISK | IS_REQUIRED, uuid.uuid4().bytes_le),
        (LOGICAL_SECTOR_SIZE, IS_VIRTUAL_DISK | IS_REQUIRED,
         struct.pack("<I", sector)),
        (PHYSICAL_SECTOR_SIZE, IS_VIRTUAL_DISK | IS_REQUIRED,
         struct.pack("<I", parent.physical_sector)),
        (PARENT_LOCATOR, IS_VIRTUAL_DISK | IS_REQUIRED, locator),
    ])

    data_write_guid = uuid.UUID(args.data_write_guid) \
        if args.data_write_guid else uuid.uuid4()
    file_type = b"vhdxfile" + "make_avhdx.py".encode("utf-16-le")
    with open(args.child, "wb") as f:
        f.truncate(next_offset)  # sparse: only structures and blocks written
        f.seek(FILE_TYPE_OFFSET)
        f.write(file_type)
        for seq, off in enumerate(HEADER_OFFSETS, start=1):
            f.seek(off)
            f.write(header(seq, data_write_guid))
        for off in REGION_TABLE_OFFSETS:
            f.seek(off)
            f.write(region_table(bat_length))
        f.seek(METADATA_OFFSET)
        f.write(metadata)
        f.seek(BAT_OFFSET)
        f.write(bat)
        for off, data in placed:
            f.seek(off)
            f.write(data)
    print(data_write_guid)


if __name__ == "__main__":
    main()
