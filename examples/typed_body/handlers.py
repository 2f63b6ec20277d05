"""A handler whose command carries its own FlatBuffers schema (image.fbs).

The request body is read in place: ImageHeader.GetRootAs(ctx.body) parses
nothing, each accessor reads its field from the request frame in shared
memory. The pixels are the payload (a numpy view, no copy). The reply's
typed body is built with the flatbuffers runtime (Debian's
python3-flatbuffers) and returned as Output(body=...).
"""

import flatbuffers
import numpy as np

from example import ImageStats
from example.ImageHeader import ImageHeader
from python_shm_worker import Output, command


@command("image_stats")
def image_stats(args, ctx):
    header = ImageHeader.GetRootAs(ctx.body, 0)
    width, height = header.Width(), header.Height()
    pixels = np.frombuffer(ctx.payload, dtype=np.uint8, count=width * height)
    b = flatbuffers.Builder(128)
    label = b.CreateString(header.Label().decode() + ", seen by Python")
    ImageStats.Start(b)
    ImageStats.AddPixels(b, int(pixels.size))
    ImageStats.AddMean(b, float(pixels.mean()))
    ImageStats.AddMin(b, int(pixels.min()))
    ImageStats.AddMax(b, int(pixels.max()))
    ImageStats.AddLabel(b, label)
    b.Finish(ImageStats.End(b))
    return Output({"ok": True}, body=b.Output())
