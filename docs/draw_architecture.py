"""Draws docs/architecture.png, the ClarityNetSR block diagram (PIL only).

  python docs/draw_architecture.py [--output=docs/architecture.png]
"""

import argparse
import os
import pathlib
import tempfile

from PIL import Image, ImageDraw, ImageFont

_W, _H = 1500, 664
_BOX_W, _BOX_H = 250, 120
_COLOURS = {  # one colour per equation
    'io': '#e8e8e8', 'W': '#cfe2ff', 'E': '#d1f0d1', 'Phi': '#ffe3c4',
    'G': '#f3d1f0'}

# (key, column, row, colour, title, detail lines)
_BOXES = [
    ('lq', 0, 0, 'io', 'LQ window',
     ['[B, 2K+1, h, w, 3]', 'edge-padded to', 'even h, w']),
    ('enc', 1, 0, 'E', 'E: encoder (eq. 4)',
     ['conv + residual blocks,', 'shared by the frames;', 'once per video frame']),
    ('flow', 2, 0, 'W', 'W: flow (eq. 3)',
     ['SPyNet-like, L levels,', 'on the LQ frames:', 'ref -> each neighbour']),
    ('warp', 3, 0, 'W', 'W: warp (eq. 3)',
     ["each neighbour's features,", 'dm-pix bilinear, float32', 'coords, replicate border']),
    ('tatt', 4, 0, 'Phi', 'Phi: temporal att.',
     ['softmax over frames of', '-scale * patch distance', 'to the reference']),
    ('merge', 4, 1, 'Phi', 'Phi: merge (eq. 5)',
     ['1x1 conv of', '[ref feature,', 'weighted average]']),
    ('satt', 3, 1, 'Phi', 'Phi: spatial att.',
     ['x * 2 sigmoid(a) + b,', '(a, b) from a', 'half-resolution branch']),
    ('dec', 2, 1, 'G', 'G: decoder (eq. 6)',
     ['residual blocks at LR', '(the bulk of the', 'FLOPs, run once)']),
    ('up', 1, 1, 'G', 'G: sub-pixel out',
     ['3x3 conv -> 3 s^2 ch:', 'the residual as s^2', 'phases at LR']),
    ('out', 0, 2, 'io', 'output',
     ['depth-to-space (s) of the', 'sum, padding cropped:', '[B, s h, s w, 3] float32']),
]
# lq -> flow passes over the encoder, enc -> warp under the flow (_detour).
_ARROWS = [('lq', 'enc'), ('lq', 'flow'), ('flow', 'warp'), ('enc', 'warp'), ('warp', 'tatt'),
           ('tatt', 'merge'), ('merge', 'satt'), ('satt', 'dec'), ('dec', 'up'),
           ('up', 'plus'), ('lq', 'plus'), ('plus', 'out')]


def _centre(col: int, row: int) -> tuple[int, int]:
  return 40 + _BOX_W // 2 + col * (_BOX_W + 45), 84 + _BOX_H // 2 + row * (_BOX_H + 70)


def _head(draw: ImageDraw.ImageDraw, start: tuple[int, int],
          end: tuple[int, int], colour: str) -> None:
  """An arrow head at `end` of an axis-aligned segment."""
  (sx, sy), (ex, ey) = start, end
  if sx == ex:
    s = 1 if ey > sy else -1
    pts = [(ex, ey), (ex - 8, ey - s * 14), (ex + 8, ey - s * 14)]
  else:
    s = 1 if ex > sx else -1
    pts = [(ex, ey), (ex - s * 14, ey - 8), (ex - s * 14, ey + 8)]
  draw.polygon(pts, fill=colour)


def _arrow(draw: ImageDraw.ImageDraw, a: tuple[int, int], b: tuple[int, int]) -> None:
  """A straight arrow between box edges (boxes share a row or a column)."""
  (ax, ay), (bx, by) = a, b
  dx, dy = bx - ax, by - ay
  if abs(dx) >= abs(dy):
    s = 1 if dx > 0 else -1
    ax, bx = ax + s * _BOX_W // 2, bx - s * _BOX_W // 2
  else:
    s = 1 if dy > 0 else -1
    ay, by = ay + s * _BOX_H // 2, by - s * _BOX_H // 2
  draw.line([(ax, ay), (bx, by)], fill='black', width=3)
  _head(draw, (ax, ay), (bx, by), 'black')


def _detour(draw: ImageDraw.ImageDraw, a: tuple[int, int], b: tuple[int, int],
            side: int) -> None:
  """An arrow between two boxes of a row that passes over (side -1) or under (+1)
  the boxes between them."""
  (ax, ay), (bx, _) = a, b
  edge = ay + side * _BOX_H // 2
  lane = edge + side * (20 if side < 0 else 32)
  draw.line([(ax, edge), (ax, lane), (bx, lane), (bx, edge)], fill='black', width=3)
  _head(draw, (bx, lane), (bx, edge), 'black')


_DETOURS = {('lq', 'flow'): -1, ('enc', 'warp'): +1}
_PLUS = _centre(0, 1)  # the sum sits where a box of column 0, row 1 would


def draw(path: pathlib.Path) -> None:
  img = Image.new('RGB', (_W, _H), 'white')
  draw = ImageDraw.Draw(img)
  title = ImageFont.load_default(size=22)
  body = ImageFont.load_default(size=17)
  draw.text((40, 14), 'ClarityNetSR: one pass, 2K+1 LQ frames -> sharp HR reference '
            '(all heavy work at LR resolution)', fill='black', font=title)
  centres = {}
  for key, col, row, colour, head, lines in _BOXES:
    cx, cy = centres[key] = _centre(col, row)
    box = (cx - _BOX_W // 2, cy - _BOX_H // 2, cx + _BOX_W // 2, cy + _BOX_H // 2)
    draw.rounded_rectangle(box, radius=12, fill=_COLOURS[colour], outline='black',
                           width=2)
    draw.text((box[0] + 12, box[1] + 8), head, fill='black', font=title)
    for i, line in enumerate(lines):
      draw.text((box[0] + 12, box[1] + 40 + 22 * i), line, fill='black', font=body)
  centres['plus'] = _PLUS
  px, py = _PLUS
  draw.ellipse((px - 18, py - 18, px + 18, py + 18), fill='white', outline='black',
               width=3)
  draw.text((px - 8, py - 14), '+', fill='black', font=title)
  for a, b in _ARROWS:
    if b == 'plus':  # edges of the sum: the residual (left) and the skip (down)
      ax, ay = centres[a]
      if a == 'lq':
        start, end, colour = (ax, ay + _BOX_H // 2), (px, py - 18), '#888800'
      else:
        start, end, colour = (ax - _BOX_W // 2, ay), (px + 18, py), 'black'
      draw.line([start, end], fill=colour, width=3)
      _head(draw, start, end, colour)
    elif a == 'plus':
      ox, oy = centres[b]
      start, end = (px, py + 18), (ox, oy - _BOX_H // 2)
      draw.line([start, end], fill='black', width=3)
      _head(draw, start, end, 'black')
    elif (a, b) in _DETOURS:
      _detour(draw, centres[a], centres[b], _DETOURS[(a, b)])
    else:
      _arrow(draw, centres[a], centres[b])
  lx, ly = centres['lq']
  draw.text((lx + 10, ly + _BOX_H // 2 + 6), "global skip: reference frame's",
            fill='#666600', font=body)
  draw.text((lx + 10, ly + _BOX_H // 2 + 26), 'bicubic phases, float32 (eq. 6)',
            fill='#666600', font=body)
  draw.text((40, _H - 58), 'Bundles trained before 2026-12-07 (warp_features=False) warp '
            'the LQ frames before E instead.', fill='black', font=body)
  draw.text((40, _H - 34), 'K = 0: no flow, no warp, same encoder and decoder.   '
            'Ablations: use_alignment=False skips W; use_attention=False fuses by a '
            'plain mean.', fill='black', font=body)
  # Write to a temporary name, then rename: never a half-written image.
  fd, tmp = tempfile.mkstemp(suffix='.png', dir=path.parent)
  os.close(fd)
  img.save(tmp, format='PNG')
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output', type=pathlib.Path,
                      default=pathlib.Path(__file__).with_name('architecture.png'))
  draw(parser.parse_args().output)


if __name__ == '__main__':
  main()
