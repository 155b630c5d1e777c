"""Peak memory of `clarity_jax.enhance` as the input video gets longer, or for one
large image.

  python launch/enhance_memory.py --bundle=BUNDLE --input=VIDEO --frames=20,40 \\
      [--tile=256] [--batch=4] [--compare]
  python launch/enhance_memory.py --bundle=BUNDLE --input=PHOTO.png --frames=1

Runs the enhance CLI once per frame count (--max_frames) in a fresh process and
reads that process's peak resident memory (ru_maxrss from wait4, so nothing of
this script is counted). Streaming means the peak should not depend on the count.
Prints one JSON object; docs/performance.md ("Enhancement memory") records it.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def measure(bundle: str, video: str, frames: int, extra: list[str], out_dir: str) -> dict:
  image = pathlib.Path(video).suffix.lower() in ('.png', '.jpg', '.jpeg', '.bmp', '.tif',
                                                 '.tiff', '.webp')
  output = os.path.join(out_dir, f'out_{frames}' + ('.png' if image else '.mp4'))
  cmd = [sys.executable, '-m', 'clarity_jax.enhance', f'--bundle={bundle}',
         f'--input={video}', f'--output={output}', f'--max_frames={frames}',
         '--progress=false', '--overwrite', *extra]
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
  seconds = time.perf_counter() - start
  proc.returncode = os.waitstatus_to_exitcode(status)
  out, err = proc.stdout.read(), proc.stderr.read()
  if proc.returncode != 0:
    raise SystemExit(f'enhance failed ({proc.returncode}):\n{err[-2000:]}')
  return {'frames': frames, 'peak_rss_mib': round(usage.ru_maxrss / 1024, 1),
          'seconds': round(seconds, 1), 'fps': round(frames / seconds, 3),
          'output_bytes': os.path.getsize(output), 'summary': out.strip()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--bundle', required=True)
  parser.add_argument('--input', required=True, help='a video file or an image')
  parser.add_argument('--frames', default='20,40', help='comma-separated frame counts')
  parser.add_argument('--tile', type=int, default=256)
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--compare', action='store_true')
  args = parser.parse_args()
  extra = [f'--tile={args.tile}', f'--batch={args.batch}'] + (
      ['--compare'] if args.compare else [])
  with tempfile.TemporaryDirectory() as out_dir:
    runs = [measure(args.bundle, args.input, int(n), extra, out_dir)
            for n in args.frames.split(',')]
  bundle_info = json.loads((pathlib.Path(args.bundle) / 'bundle.json').read_text())
  print(json.dumps({'input': args.input, 'model': bundle_info['model'], 'tile': args.tile,
                    'batch': args.batch, 'compare': args.compare,
                    'machine': f'{platform.machine()}, {os.cpu_count()} CPUs',
                    'runs': runs}, indent=2))


if __name__ == '__main__':
  main()
