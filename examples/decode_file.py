"""Decode a capture file of raw meter bytes without asyncio: frames -> messages -> dictionaries.

Usage: python decode_file.py CAPTURE.bin
"""

from __future__ import annotations

import sys
from pathlib import Path

from amshan.autodecoder import AutoDecoder
from amshan.dlms import is_whole_apdu
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler


def main(path: str) -> int:
    reader = HdlcFrameReader()
    assembler = HdlcMessageAssembler(is_whole_apdu)  # joins HDLC-segmented messages, drops broken ones
    decoder = AutoDecoder()
    with Path(path).open("rb") as capture:
        while chunk := capture.read(4096):  # any chunking works: the reader keeps partial frames
            for frame in reader.read(chunk):
                content = assembler.add(frame)  # None until a whole, valid message is there
                if content is None:
                    continue
                decoded = decoder.decode_frame_content(content)  # never raises; None if it does not decode
                if decoded is None:
                    print(f"undecodable message: {content.hex()}", file=sys.stderr)
                else:
                    print(decoder.previous_success_decoder, decoded)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
