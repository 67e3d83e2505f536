"""Decode a capture file of raw meter bytes without asyncio: frames -> messages -> dictionaries.

Usage: python decode_file.py CAPTURE.bin
Exits as `amshan read` does: 0 when a message decoded, 1 when none did, 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amshan.autodecoder import AutoDecoder
from amshan.dlms import is_whole_apdu
from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler


def main(path: str) -> int:
    reader = HdlcFrameReader()
    assembler = HdlcMessageAssembler(is_whole_apdu)  # joins HDLC-segmented messages, drops broken ones
    decoder = AutoDecoder()
    decoded_count = 0
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
                    decoded_count += 1
                    print(decoder.previous_success_decoder, decoded)
    if not decoded_count:
        print(f"decode_file.py: no message decoded from {path}", file=sys.stderr)
    return 0 if decoded_count else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="decode_file.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("capture", help="a file of raw bytes as the meter sent them")
    capture = parser.parse_args().capture
    try:
        sys.exit(main(capture))
    except OSError as error:
        print(f"decode_file.py: cannot read {capture}: {error.strerror}", file=sys.stderr)
        sys.exit(2)
