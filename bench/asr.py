"""Speech recognition speed: real-time factor of Whisper base (faster-whisper, CTranslate2).

On the same clips, in the same run, measures per clip

* audio decode  seconds — streaming the audio out of the video (``pipeline.audio``), alone;
* transcribe    seconds — what the speech track runs: stream + VAD + Whisper
  (``WhisperRecognizer.transcribe``), and its real-time factor RTF = seconds /
  clip duration (below 1 = faster than real time);
* CPU seconds the process spent transcribing (all threads): on a shared machine the
  wall time swings with the load, the CPU time much less;
* WER against the text spoken, for the clips made with espeak-ng;

and, as a baseline measured in the same run, Whisper on the same audio with and
without word alignment (the recogniser always aligns, for exact segment times):
the ratio is what that alignment costs.

Clips: espeak-ng speech (en-us, 140 wpm) over a grey picture and over the sample clip
bikes.mp4, a minute of speech, and the sample clips as they are (only
bigbuckbunny.mp4 has an audio track: music, no speech). CPU int8 by default; on a
machine with a GPU CTranslate2 can use, ``--device auto`` runs float16 there.

    python bench/asr.py                 # ~1-2 minutes on 2 CPU cores
    python bench/asr.py --device auto   # GPU float16 when present
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the speech clips are made as the tests make them

from videomem.encoders.asr import ASRConfig, WhisperRecognizer, asr_device  # noqa: E402
from videomem.pipeline.audio import NoAudio, open_audio  # noqa: E402
from videomem.pipeline.probe import probe  # noqa: E402

from tests.speech import SENTENCES, make_speech_video, word_error_rate  # noqa: E402

#: a minute of speech: more sentences a film or lecture might hold
MORE = (
    "Good evening, and welcome to the nine o'clock news.",
    "The weather will stay dry tomorrow, with sunshine in the afternoon.",
    "Please remember to bring your passport to the airport.",
    "The meeting has been moved to Thursday at half past ten.",
    "She opened the window and listened to the rain.",
    "Our train leaves from platform four in twenty minutes.",
)


def clips(out: Path, samples: Path) -> list[tuple[str, Path, str | None]]:
    """(name, path, text said or None)."""
    spoken = " ".join(SENTENCES)
    made = [("espeak, grey picture", make_speech_video(out / "speech.mp4").path, spoken)]
    if (samples / "bikes.mp4").is_file():
        clip = make_speech_video(out / "bikes_speech.mp4", video=samples / "bikes.mp4")
        made.append(("espeak over bikes.mp4", clip.path, spoken))
    minute = (*SENTENCES, *MORE) * 2
    long = make_speech_video(out / "minute.mp4", sentences=minute, gap_s=0.8)
    made.append((f"espeak, {long.duration_s:.0f} s", long.path, " ".join(minute)))
    for p in sorted(samples.glob("*.mp4")):
        made.append((p.name, p, None))
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (int8), auto, cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for CTranslate2")
    ap.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "testdata")
    args = ap.parse_args()

    kind, _, ctype = asr_device(args.device)
    t0 = time.perf_counter()
    rec = WhisperRecognizer(ASRConfig(device=args.device, cpu_threads=args.threads))
    load_s = time.perf_counter() - t0
    print(
        f"Whisper base (whisper-base), {kind} {ctype}, {args.threads} CPU threads; load {load_s:.1f} s"
    )
    print(f"{'clip':28} {'dur s':>6} {'decode s':>8} {'asr s':>6} {'RTF':>6} {'x rt':>6} "
          f"{'cpu s':>6} {'segs':>4} {'WER':>5}")  # fmt: skip
    total_dur = total_asr = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        made = clips(Path(tmp), args.samples)
        for name, path, text in made:
            src = probe(path)
            audio = open_audio(path, src)
            if isinstance(audio, NoAudio):
                print(f"{name:28} {src.duration_s or 0:6.1f}  no audio stream")
                continue
            t = time.perf_counter()
            n = sum(len(c.samples) for c in audio)
            decode_s = time.perf_counter() - t
            dur = n / 16000
            t, c = time.perf_counter(), time.process_time()
            segs = list(rec.transcribe(open_audio(path, src)))  # type: ignore[arg-type]
            asr_s, cpu_s = time.perf_counter() - t, time.process_time() - c
            total_dur, total_asr = total_dur + dur, total_asr + asr_s
            said = " ".join(s.text for s in segs)
            wer = f"{word_error_rate(text, said):5.2f}" if text else "    -"
            print(f"{name:28} {dur:6.1f} {decode_s:8.2f} {asr_s:6.2f} {asr_s / dur:6.3f} "
                  f"{dur / asr_s:6.1f} {cpu_s:6.1f} {len(segs):4d} {wer}")  # fmt: skip
            if said and (not text or word_error_rate(text, said) > 0):
                print(f"{'':28} heard: {said[:300]!r}")
        print(f"{'all clips with audio':28} {total_dur:6.1f} {'':8} {total_asr:6.2f} "
              f"{total_asr / total_dur:6.3f} {total_dur / total_asr:6.1f}")  # fmt: skip

        # baseline in the same run: Whisper alone on the minute of speech, with and
        # without the word alignment the recogniser always does
        minute_path = next(p for name, p, _ in made if name.endswith(" s"))
        chunks = open_audio(minute_path)
        assert not isinstance(chunks, NoAudio)
        x = np.concatenate([c.samples for c in chunks])
        times: dict[bool, float] = {}
        cpu: dict[bool, float] = {}
        for aligned in (False, True, False, True):  # interleaved: drifting load hits both
            t, c = time.perf_counter(), time.process_time()
            segments, _ = rec.model.transcribe(
                x,
                beam_size=5,
                vad_filter=True,
                condition_on_previous_text=rec.config.condition_on_previous_text,
                word_timestamps=aligned,
            )
            list(segments)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            times[aligned] = min(times.get(aligned, dt), dt)
            cpu[aligned] = min(cpu.get(aligned, dc), dc)
        print(f"\nbaseline on {len(x) / 16000:.0f} s of speech (best of 2): Whisper alone "
              f"{times[False]:.2f} s ({cpu[False]:.1f} CPU s), with word alignment "
              f"{times[True]:.2f} s ({cpu[True]:.1f} CPU s); ratio {times[True] / times[False]:.2f} "
              f"wall, {cpu[True] / cpu[False]:.2f} CPU")  # fmt: skip


if __name__ == "__main__":
    main()
