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

Then the cost of ``index --speech`` against ``index`` alone, on the same clips in the
same run (best of ``--rounds``, the three interleaved so drifting load hits all):

* wall(index)        — ``run_index`` without speech (its ``elapsed_s``: the loop over
  the videos, model loads excluded), the real MobileNetV2 at 2 fps by default;
* wall(transcribe)   — the transcribe step over the same videos, alone (load excluded);
* wall(index_speech) — ``run_index`` with ``speech=`` (the audio recognised on its own
  thread beside each video's decode and encode);

and the overlap ratio ``(index + transcribe - index_speech) / min(index, transcribe)``
(1.0 = the shorter one fully hidden, as bench/index.py reports for decode/encode; 0 =
no better than running them one after the other). On a machine whose cores the two
already fill, the ratio is bounded by the cores, not by the pipeline.

Clips: espeak-ng speech (en-us, 140 wpm) over a grey picture and over the sample clip
bikes.mp4, a minute of speech, and the sample clips as they are (only
bigbuckbunny.mp4 has an audio track: music, no speech). CPU int8 by default; on a
machine with a GPU CTranslate2 can use, ``--device auto`` runs float16 there.

    python bench/asr.py                 # ~2-4 minutes on 2 CPU cores
    python bench/asr.py --device auto   # GPU float16 when present
    python bench/asr.py --overlap-only  # only index vs index --speech
    python bench/asr.py --quick         # that, one round
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
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
    ap.add_argument(
        "--index-model",
        default=str(REPO.parent / "shared" / "models" / "mobilenet_v2_imagenet"),
        help="encoder of the index runs (default: the real MobileNetV2; 'tiny' works too)",
    )
    ap.add_argument("--index-fps", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2, help="overlap rounds (best of)")
    ap.add_argument("--overlap-only", action="store_true", help="skip the RTF table")
    ap.add_argument("--quick", action="store_true", help="--overlap-only --rounds 1")
    ap.add_argument("--full", action="store_true", help="three overlap rounds")
    args = ap.parse_args()
    if args.quick:
        args.overlap_only, args.rounds = True, 1
    if args.full:
        args.rounds = 3
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        made = clips(Path(tmp), args.samples)
        if not args.overlap_only:
            rtf_table(args, made)
        overlap(args, made, Path(tmp))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def rtf_table(args: argparse.Namespace, made: list[tuple[str, Path, str | None]]) -> None:
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


def overlap(args: argparse.Namespace, made: list[tuple[str, Path, str | None]], tmp: Path) -> None:
    """wall(index), wall(transcribe), wall(index --speech) on the same clips; the
    overlap ratio (see the module docstring)."""
    from videomem.encoders.config import EncoderConfig
    from videomem.jobs.index import IndexJob, run_index
    from videomem.jobs.transcribe_job import TranscribeItem, TranscribeStep, TranscribeTask
    from videomem.pipeline.files import content_video_id
    from videomem.pipeline.types import DecodeConfig

    folder = tmp / "overlap"
    folder.mkdir()
    for i, (_, path, _) in enumerate(made):  # one folder: one index job over all of them
        try:
            os.link(path, folder / f"{i}_{path.name}")
        except OSError:  # another file system
            shutil.copy(path, folder / f"{i}_{path.name}")
    model = args.index_model
    if model != "tiny" and not Path(model).is_dir():
        print(f"\n{model} not found: the index runs use --index-model tiny")
        model = "tiny"
    asr = ASRConfig(device=args.device, cpu_threads=args.threads)

    def index(speech: bool) -> float:
        store = tmp / "store"
        shutil.rmtree(store, ignore_errors=True)
        job = IndexJob(
            paths=[str(folder)], store=str(store), executor="local",
            encoder=EncoderConfig(model=model, device="cpu", batch_size=32),
            decode=DecodeConfig(fps=args.index_fps, aspect="crop"),
            speech=asr if speech else None,
        )  # fmt: skip
        s = run_index(job)
        if s.failed:
            raise SystemExit(f"index failed: {s.failures}")
        return s.elapsed_s

    step = TranscribeStep(asr)  # loaded once, outside the timing
    task = TranscribeTask(asr.settings_hash(), asr.settings_json())
    items = [TranscribeItem(content_video_id(p), str(p)) for p in sorted(folder.iterdir())]
    audio_s = 0.0

    def transcribe() -> float:
        nonlocal audio_s
        t = time.perf_counter()
        rows = [step.run(item, task, None) for item in items]
        audio_s = sum(r.audio_s or 0.0 for r in rows)
        return time.perf_counter() - t

    index(False)  # warm-up: the encoder's first load and the page cache
    best = {"index": float("inf"), "transcribe": float("inf"), "index_speech": float("inf")}
    cpu = dict.fromkeys(best, float("inf"))
    for _ in range(args.rounds):
        for name, run in (("index", lambda: index(False)), ("transcribe", transcribe),
                          ("index_speech", lambda: index(True))):  # fmt: skip
            c = _cpu_s()
            best[name] = min(best[name], run())
            cpu[name] = min(cpu[name], _cpu_s() - c)
    i, t, both = best["index"], best["transcribe"], best["index_speech"]
    ratio = (i + t - both) / min(i, t)
    # the best any overlap can do on these cores: the CPU work of both spread on all
    cores = os.cpu_count() or 1
    floor = max(i, t, (cpu["index"] + cpu["transcribe"]) / cores)
    print(f"\nindex vs index --speech: {len(items)} clips, {audio_s:.0f} s of audio, encoder "
          f"{Path(model).name} at {args.index_fps:g} fps, Whisper {asr_device(args.device)[0]} "
          f"(best of {args.rounds}, loads excluded)")  # fmt: skip
    print(f"  wall(index)        {i:7.2f} s   ({cpu['index']:.1f} CPU s, ffmpeg included)")
    print(f"  wall(transcribe)   {t:7.2f} s   ({cpu['transcribe']:.1f} CPU s)")
    print(f"  wall(index_speech) {both:7.2f} s   ({cpu['index_speech']:.1f} CPU s; serial "
          f"would be {i + t:.2f} s: {(i + t) / both:.2f}x faster)")  # fmt: skip
    print(f"  overlap ratio (index + transcribe - index_speech) / min = {ratio:.2f} "
          "(1.0 = the shorter one fully hidden, 0 = serial)")  # fmt: skip
    print(f"  on {cores} cores the CPU work alone needs >= {floor:.2f} s: the best ratio "
          f"these cores allow is {(i + t - floor) / min(i, t):.2f}")  # fmt: skip


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children (ffmpeg)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
