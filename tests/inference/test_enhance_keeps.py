"""enhance keeps what restoration does not touch: audio and subtitle streams,
every frame's timestamp, 10-bit depth and 4:4:4 chroma; and the frames of a
stopped job."""

import fractions
import logging
import os
import re
from pathlib import Path
import signal
import subprocess
import time

import av
import numpy as np
import pytest

from clarity_jax.media import frames as frames_lib
from clarity_jax.media import writers
from clarity_jax.media import video_writer
from clarity_jax.inference import enhance

TB = fractions.Fraction(1, 1000)
AUDIO_RATE = 48_000


def _video(path: Path, frames_u8: np.ndarray, pts: list[int], *, audio: str | None = 'aac',
           audio_seconds: float = 0.0, subtitle: bool = False, pix_fmt: str = 'yuv420p',
           deep: bool = False) -> Path:
  """A video whose frames sit at `pts` (ms): variable frame rate when uneven; with a
  sine tone of `audio_seconds` in `audio`, and a subtitle stream if asked."""
  with av.open(str(path), 'w') as c:
    v = c.add_stream('libx264', rate=25)
    v.height, v.width = frames_u8.shape[1:3]
    v.pix_fmt = pix_fmt
    v.codec_context.time_base = TB
    v.time_base = TB
    v.options = {'crf': '12'}
    a = None
    if audio:
      a = c.add_stream(audio, rate=AUDIO_RATE)
      a.layout = 'mono'
    srt = None
    if subtitle:  # PyAV encodes no subtitles: demux them from an .srt file
      text = path.with_suffix('.srt')
      text.write_text('1\n00:00:00,000 --> 00:00:00,100\nplate AB-123\n\n')
      srt = av.open(str(text))
      c.add_stream_from_template(srt.streams.subtitles[0])
    for f, t in zip(frames_u8, pts):
      frame = av.VideoFrame.from_ndarray(f, format='rgb48le' if deep else 'rgb24')
      frame.pts, frame.time_base = t, TB
      for p in v.encode(frame):
        c.mux(p)
    for p in v.encode():
      c.mux(p)
    if a is not None:
      n = int(audio_seconds * AUDIO_RATE)
      tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / AUDIO_RATE)).astype(np.float32)
      fmt = a.codec_context.format.name
      for start in range(0, n, 1024):
        chunk = tone[start:start + 1024][None]
        frame = av.AudioFrame.from_ndarray(
            chunk if fmt in ('fltp', 'flt') else (chunk * 32767).astype(np.int16),
            format=fmt if fmt in ('fltp', 'flt') else 's16p', layout='mono')
        frame.sample_rate = AUDIO_RATE
        frame.pts, frame.time_base = start, fractions.Fraction(1, AUDIO_RATE)
        for p in a.encode(frame):
          c.mux(p)
      for p in a.encode():
        c.mux(p)
    if srt is not None:
      for p in srt.demux(srt.streams.subtitles[0]):
        if p.size:
          p.stream = c.streams.subtitles[0]
          c.mux(p)
      srt.close()
  return path


def _streams(path: Path) -> dict:
  """Per stream type: (codec, first packet start, last packet end (seconds), packet
  count); and the video's frame times (seconds) and pixel format."""
  out = {}
  with av.open(str(path)) as c:
    for s in c.streams:
      with av.open(str(path)) as c2:
        packets = [p for p in c2.demux(c2.streams[s.index]) if p.size]
      first = min(p.pts * p.time_base for p in packets) if packets else None
      last = max((p.pts + (p.duration or 0)) * p.time_base for p in packets) if packets else None
      out[s.type] = (s.codec_context.name if s.codec_context else s.codec.name,
                     first, last, len(packets))
    v = c.streams.video[0]
    out['times'] = [f.pts * f.time_base for f in c.decode(v)]
    out['pix_fmt'] = v.codec_context.pix_fmt
  return out


@pytest.fixture
def run(tiny_model, tmp_path):
  def go(video: Path, name: str = 'out.mp4', **kw) -> Path:
    engine = tiny_model.restorer(tile=None, batch=2)
    out = tmp_path / name
    enhance.enhance(engine, video, out, progress=False, **kw)
    return out
  return go


def test_audio_is_copied_in_sync_and_timestamps_kept(run, smooth_frames, tmp_path):
  """Variable frame rate (gaps of 40, 80 and 20 ms) and an AAC track: output frames
  at the input's times, the audio packets copied bit for bit."""
  src = smooth_frames(7, 24, 32)
  pts = [0, 40, 120, 140, 180, 260, 280]
  video = _video(tmp_path / 'vfr.mp4', src, pts, audio_seconds=0.3)
  out = run(video)
  got, want = _streams(out), _streams(video)
  assert got['times'] == want['times'] == [t * TB for t in pts]
  assert got['audio'][0] == 'aac'
  # The same duration, within one AAC frame (1,024 samples).
  one_frame = fractions.Fraction(1024, AUDIO_RATE)
  assert abs(got['audio'][2] - want['audio'][2]) <= one_frame
  assert abs(got['audio'][1] - want['audio'][1]) <= one_frame
  assert got['audio'][3] == want['audio'][3]


def test_max_frames_cuts_the_audio_with_the_picture(run, smooth_frames, tmp_path):
  src = smooth_frames(8, 24, 32)
  video = _video(tmp_path / 'in.mp4', src, [40 * i for i in range(8)], audio_seconds=0.32)
  got = _streams(run(video, max_frames=3))
  assert len(got['times']) == 3
  # Audio up to the end of frame 3 (120 ms), not the input's 320 ms.
  assert got['audio'][2] <= fractions.Fraction(120, 1000) + fractions.Fraction(1024, AUDIO_RATE)


def test_audio_the_container_cannot_hold_is_reencoded(run, smooth_frames, tmp_path):
  """Opus (mkv) into .avi: re-encoded to AAC, same length within an audio frame."""
  src = smooth_frames(5, 24, 32)
  video = _video(tmp_path / 'in.mkv', src, [40 * i for i in range(5)], audio='libopus',
                 audio_seconds=0.2)
  got, want = _streams(run(video, 'out.avi')), _streams(video)
  assert want['audio'][0] == 'opus' and got['audio'][0] == 'aac'
  assert abs(got['audio'][2] - want['audio'][2]) <= fractions.Fraction(2048, AUDIO_RATE)


def test_subtitles_kept_in_mkv_and_named_when_dropped(run, smooth_frames, tmp_path, caplog):
  src = smooth_frames(4, 24, 32)
  video = _video(tmp_path / 'in.mkv', src, [40 * i for i in range(4)], audio=None,
                 subtitle=True)
  with av.open(str(run(video, 'out.mkv'))) as c:
    assert [s.type for s in c.streams] == ['video', 'subtitle']
  with caplog.at_level(logging.WARNING):
    mp4 = run(video, 'out.mp4')
  with av.open(str(mp4)) as c:
    assert [s.type for s in c.streams] == ['video']
  assert 'subtitle stream 1 (srt) dropped: mp4 cannot hold srt' in caplog.text
  assert '.mkv' in caplog.text


@pytest.mark.parametrize('pix_fmt', ['yuv420p10le', 'yuv444p', 'yuv444p10le'])
def test_pixel_format_is_kept(run, smooth_frames, tmp_path, pix_fmt):
  deep = pix_fmt.endswith('10le')
  src = smooth_frames(3, 24, 32)
  frames = (src.astype(np.uint16) * 257) if deep else src
  video = _video(tmp_path / 'in.mp4', frames, [0, 40, 80], audio=None, pix_fmt=pix_fmt,
                 deep=deep)
  assert _streams(run(video))['pix_fmt'] == pix_fmt


def test_an_interrupted_job_resumes_to_the_same_bytes(tiny_model, run_enhance, enhance_command,
                                                      command_env, smooth_frames, tmp_path):
  """Ctrl-C after the first whole segment: 'interrupted', status 130, nothing under
  the output name, the segment kept. Then SIGKILL after the second. The same command
  again restores only the rest, and the output equals an uninterrupted run's, byte
  for byte, audio included."""
  n = 3 * video_writer.SEGMENT_FRAMES + 20
  video = _video(tmp_path / 'in.mp4', smooth_frames(n, 24, 32), [40 * i for i in range(n)],
                 audio_seconds=n * 0.04)

  def flags(out: Path) -> list[str]:
    return [f'--bundle={tiny_model.path}', f'--input={video}', f'--output={out}', '--tile=0',
            '--preset=ultrafast']

  def stop_after(segment: int, sig: int) -> subprocess.Popen:
    proc = subprocess.Popen(enhance_command(*flags(out)), env=command_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (parts / f'seg-{segment:06d}.mp4').exists():
      assert proc.poll() is None and time.time() < deadline, f'no segment {segment}'
      time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert not out.exists()
    return proc

  straight = tmp_path / 'straight.mp4'
  assert run_enhance(*flags(straight)).returncode == 0
  out = tmp_path / 'resumed.mp4'
  parts = video_writer.work_folder(out)
  interrupted = stop_after(0, signal.SIGINT)
  stderr = interrupted.stderr.read()
  assert interrupted.returncode == 130, stderr[-2000:]
  assert stderr.strip().splitlines()[-1] == 'interrupted'
  assert 'the same command continues from there' in stderr and 'Traceback' not in stderr
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.resumed')) == [
      parts.name]  # no temporaries beside the kept segments
  assert not [p for p in parts.iterdir() if p.name.startswith('.')]
  stop_after(1, signal.SIGKILL)
  done = run_enhance(*flags(out))
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'resuming after frame' in done.stderr
  assert f'{n} frames' in done.stdout
  assert out.read_bytes() == straight.read_bytes()
  assert not parts.exists()
  assert _streams(out)['times'] == [i * fractions.Fraction(40, 1000) for i in range(n)]


def test_a_folder_of_videos_gives_a_folder_of_outputs(tiny_model, run_enhance, smooth_frames,
                                                       tmp_path):
  """One output per video (.webm becomes .mp4), here from two hosts' shards (--shard);
  a second run skips the complete ones and does the one whose output was removed."""
  clips = tmp_path / 'clips'
  clips.mkdir()
  _video(clips / 'b.mkv', smooth_frames(3, 24, 32), [0, 40, 80], audio=None)
  _video(clips / 'a.mp4', smooth_frames(4, 24, 32), [0, 40, 80, 120], audio_seconds=0.16)
  (clips / 'notes.txt').write_text('not a video')
  out = tmp_path / 'restored'
  flags = [f'--bundle={tiny_model.path}', f'--input={clips}', f'--output={out}', '--tile=0',
           '--preset=ultrafast']
  counts = []
  for shard in ('0/2', '1/2'):
    first = run_enhance(*flags, f'--shard={shard}')
    assert first.returncode == 0, first.stderr[-2000:]
    said = re.search(rf'{clips}: shard {shard}: (\d) of 2 videos -> {out}\n', first.stdout)
    assert said, first.stdout
    counts.append(int(said[1]))
  assert sum(counts) == 2 and sorted(os.listdir(out)) == ['a.mp4', 'b.mkv']
  assert len(_streams(out / 'a.mp4')['times']) == 4 and 'audio' in _streams(out / 'a.mp4')
  assert len(_streams(out / 'b.mkv')['times']) == 3
  stamp = (out / 'b.mkv').stat().st_mtime_ns
  (out / 'a.mp4').unlink()
  second = run_enhance(*flags)
  assert second.returncode == 0, second.stderr[-2000:]
  assert 'b.mkv: already restored, skipped' in second.stdout
  assert (out / 'b.mkv').stat().st_mtime_ns == stamp and (out / 'a.mp4').is_file()
  same = run_enhance(*flags[:2], f'--output={clips}', *flags[3:])
  assert same.returncode == 1
  assert same.stderr.strip().splitlines()[-1] == (
      f'error: {clips}: the outputs would land among the input videos; choose another folder')
  assert video_writer.work_folder(out / 'a.mp4').exists() is False


def test_a_stopped_frame_folder_job_resumes_to_the_same_bytes(tiny_model, run_enhance,
                                                               smooth_frames, tmp_path):
  """A damaged frame in the middle of the second clip stops the job: status 1, the
  file named, nothing under the output name, the first clip's frames kept. With the
  frame repaired (and a half-written frame of a killed run planted), the same command
  resumes and its folder equals an uninterrupted run's, file for file."""
  clips = tmp_path / 'clips'
  video = smooth_frames(14, 24, 32)
  for c, clip in enumerate(['a', 'b']):
    (clips / clip).mkdir(parents=True)
    for i in range(7):
      frames_lib.write_image(clips / clip / f'{i:04d}.png', video[7 * c + i])
  damaged = clips / 'b' / '0004.png'
  good = damaged.read_bytes()
  damaged.write_bytes(good[:len(good) // 2])  # the header reads; the pixels do not

  def enhance(out: Path) -> subprocess.CompletedProcess:
    return run_enhance(f'--bundle={tiny_model.path}', f'--input={clips}', f'--output={out}',
                       '--tile=0', '--batch=2')

  out = tmp_path / 'restored'
  parts = writers.work_folder(out)
  stopped = enhance(out)
  assert stopped.returncode == 1, stopped.stderr[-2000:]
  assert stopped.stderr.strip().splitlines()[-1].startswith(f'error: {damaged}')
  assert 'the same command continues from there' in stopped.stderr
  assert not out.exists()
  kept = sorted(str(p.relative_to(parts)) for p in parts.rglob('*.png'))
  assert [k for k in kept if k.startswith('a/')] == [f'a/{i:04d}.png' for i in range(7)]
  damaged.write_bytes(good)
  (parts / 'b').mkdir(exist_ok=True)
  (parts / 'b' / '.0006.tmp.png').write_bytes(b'half a frame')
  done = enhance(out)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'resuming; {len(kept)} restored frames kept' in done.stderr
  assert '14 frames' in done.stdout
  assert not parts.exists()
  straight = tmp_path / 'straight'
  assert enhance(straight).returncode == 0
  names = sorted(str(p.relative_to(straight)) for p in straight.rglob('*') if p.is_file())
  assert names == sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file())
  assert len([n for n in names if n.endswith('.png')]) == 14
  for name in names:
    assert (out / name).read_bytes() == (straight / name).read_bytes(), name
