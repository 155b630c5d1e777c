"""Frames, images and videos in and out: the readers of real footage, the resumable
writers of restored output, and the audio and subtitle streams carried across.

Float32 RGB [H, W, 3] in [0, 1] on the inside; nothing here knows about training.
"""
