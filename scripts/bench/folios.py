#!/usr/bin/env python3
"""How much of a file's page cache sits in large folios: maps the file, touches every page, and reads each page's
flags from /proc/self/pagemap and /proc/kpageflags (root only). Prints one JSON line: {"pages": N, "large": M}.

Why: copying out of the page cache costs per folio, and a filesystem gets large folios only if the kernel enables
them for it. The benchmark prints this for the warm big file on the mount and on local disk, next to their speeds."""
import json
import mmap
import os
import struct
import sys

PAGE = os.sysconf('SC_PAGE_SIZE')
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16


def main(path):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    pages = size // PAGE
    if pages == 0:
        print(json.dumps({'pages': 0, 'large': 0}))
        return
    view = mmap.mmap(fd, pages * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
    for i in range(pages):
        view[i * PAGE]  # map it (the bytes are already cached: this reads nothing from the filesystem)
    start = next(int(line.split('-')[0], 16) for line in open('/proc/self/maps') if line.rstrip().endswith(' ' + path))
    large = 0
    with open('/proc/self/pagemap', 'rb') as pagemap, open('/proc/kpageflags', 'rb') as kpageflags:
        pagemap.seek(start // PAGE * 8)
        entries = struct.unpack(f'{pages}Q', pagemap.read(pages * 8))
        for entry in entries:
            if not entry >> 63:
                continue
            kpageflags.seek((entry & ((1 << 55) - 1)) * 8)
            if struct.unpack('Q', kpageflags.read(8))[0] & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL):
                large += 1
    print(json.dumps({'pages': pages, 'large': large}))


if __name__ == '__main__':
    main(os.path.realpath(sys.argv[1]))
