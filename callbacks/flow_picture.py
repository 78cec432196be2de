"""The gradient-flow picture: mean and max ``|grad|`` per layer on a log scale, drawn with Pillow.

Why not matplotlib (our plotting library everywhere else): this picture is drawn once per epoch
*inside* training, and matplotlib's Agg renderer takes about 65 ms for it on the 2-core CPU
machine, a fifth of a LeNet-5/digits epoch (37 steps of ~7.5 ms), which broke the inspector's
<= 5 % overhead bar (``benchmarks/inspector_overhead.py``). Pillow is already installed with
torchvision and draws and writes the same bars, axis, labels and legend in about 2.6 ms
(``benchmarks/flow_picture.py`` measures both). Pictures made once, after training, keep using
matplotlib.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MAX_COLOR = (120, 200, 230)  # light blue: max |grad|
MEAN_COLOR = (31, 90, 170)  # dark blue: mean |grad|
GRID = (225, 225, 225)
INK = (40, 40, 40)


def _palette() -> Image.Image:
    # Every colour the picture uses: background, bars, grid and a 16-step ramp from the ink to
    # white for the anti-aliased text (text only ever sits on white).
    cols = [(255, 255, 255), MAX_COLOR, MEAN_COLOR, GRID]
    cols += [tuple(round(INK[c] + (255 - INK[c]) * k / 15) for c in range(3)) for k in range(16)]
    pal = Image.new("P", (1, 1))
    flat = [v for c in cols for v in c]
    pal.putpalette(flat + flat[-3:] * (256 - len(cols)))
    return pal


_PALETTE = _palette()


def save_png(img: Image.Image, path) -> None:
    """Write the picture as a 20-colour palette PNG: mapping onto the fixed palette and encoding
    take about 0.9 ms, against 3.1 ms for the RGB PNG (``benchmarks/flow_picture.py``, 2-core CPU)."""
    img.quantize(palette=_PALETTE, dither=Image.Dither.NONE).save(path, "PNG", compress_level=1)


@lru_cache(maxsize=4)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1 with FreeType
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=1024)
def _mask(text: str, size: int, angle: int = 0) -> Image.Image:
    """``text`` as an anti-aliased mask, rotated by ``angle`` degrees; cached because the layer
    names and decade labels repeat every epoch (text rendering is most of the drawing time)."""
    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    m = Image.new("L", (max(x1, 1), max(y1, 1)), 0)
    ImageDraw.Draw(m).text((0, 0), text, fill=255, font=font)
    return m.rotate(angle, expand=True, resample=Image.BICUBIC) if angle else m


def render_gradient_flow(names: list[str], means: list[float], maxes: list[float], title: str,
                         floor: float = -12.0) -> Image.Image:
    """Bars of ``log10 mean|g|`` over ``log10 max|g|`` per layer, layers left to right in forward order.

    A layer with a zero gradient gets no bar; the axis then reaches down to ``floor`` (1e-12), so
    the gap is visible next to the others.
    """
    if not (len(names) == len(means) == len(maxes)):
        raise ValueError(f"render_gradient_flow: {len(names)} names, {len(means)} means, {len(maxes)} maxes")
    # font sizes; layer names at 12 px: at 10 the default font merges the dot of "net." into the t
    small, normal = 10, 12
    lg = [max(math.log10(v), floor) if v > 0 else floor for v in maxes]
    lm = [max(math.log10(v), floor) if v > 0 else floor for v in means]
    # whole decades with room on both sides: a bar exactly on a decade still shows
    top = math.floor(max(lg)) + 1 if lg else 0
    bottom = min(math.ceil(min(lm)) - 1, top - 1) if lm else top - 1
    label_w = max([_mask(n, normal).width for n in names] + [10])
    slot = 28
    left, right, head = 58, 16, 48
    # layer names run upwards under their bars: a quarter turn moves pixels without resampling,
    # so the 1-pixel dots of "net.features.1.0" stay sharp (a 60-degree turn blurred them away)
    foot = label_w + 12
    width = max(420, left + right + slot * len(names))
    height = 230 + head + foot
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = left, width - right, head, height - foot  # plot area
    scale = (y1 - y0) / (top - bottom)
    ypix = lambda v: y1 - (v - bottom) * scale  # noqa: E731

    # decades: a grid line and a label each (every second one when there are many)
    step = 1 if top - bottom <= 8 else 2
    for d in range(bottom, top + 1, step):
        y = ypix(d)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        m = _mask(f"1e{d}", small)
        img.paste(INK, (x0 - 6 - m.width, int(y - m.height / 2)), m)
    ylab = _mask("|gradient|", small, 90)
    img.paste(INK, (4, int((y0 + y1) / 2 - ylab.height / 2)), ylab)

    slot = (x1 - x0) / max(len(names), 1)
    for i, name in enumerate(names):
        cx = x0 + slot * (i + 0.5)
        half = slot * 0.35
        if maxes[i] > 0:  # a layer whose gradient is exactly zero gets no bar
            draw.rectangle([cx - half, ypix(lg[i]), cx + half, y1], fill=MAX_COLOR)
        if means[i] > 0:
            draw.rectangle([cx - half * 0.6, ypix(lm[i]), cx + half * 0.6, y1], fill=MEAN_COLOR)
        lab = _mask(name, normal, 90)  # its end just under the bar
        img.paste(INK, (int(cx - lab.width / 2), int(y1 + 4)), lab)
    draw.rectangle([x0, y0, x1, y1], outline=INK)

    m = _mask(title, normal)
    img.paste(INK, ((width - m.width) // 2, 6), m)
    # legend: one row between the title and the plot, right-aligned
    lx, ly = x1 - 190, 26
    for color, text in ((MAX_COLOR, "max |grad|"), (MEAN_COLOR, "mean |grad|")):
        draw.rectangle([lx, ly + 2, lx + 12, ly + 12], fill=color)
        img.paste(INK, (lx + 18, ly), _mask(text, small))
        lx += 95
    return img
