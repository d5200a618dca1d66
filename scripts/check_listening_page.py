#!/usr/bin/env python
"""Open the listening page of ``zs2020 evaluate`` (``EVALUATION/index.html``) in headless
Chromium, as a person would, and check that it really plays.

The evaluation folder is first copied elsewhere (a fresh temporary folder; ``--in-place`` checks
it where it is): the page must play from the copy, i.e. everything it plays or shows lies inside
the folder. Chromium (Debian ``chromium``; not a dependency of zs2020 or of ``make test``) runs
headless with every host name unresolvable and is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: no port, no extra package). The checks:

* offline: no ``http(s)://`` in any ``src``/``href``, no request other than ``file://`` made;
* every ``<audio>`` loads: a finite duration equal to its wav's (read here with soundfile)
  within 10 ms (``--tolerance-ms``), written by the page's own script into ``data-duration``;
  one converted line is played for a second (its clock must advance); every ``<img>`` decodes;
* rows sort: clicking a measure's column head orders the rows by it (both directions);
* failing lines are flagged: the rows marked ``fail`` are exactly the lines of scores.json that
  are closer to the source than to the target, or have a CER above the source's;
* a screenshot (``--screenshot PNG``) of the first converted lines; ``--docs PNG`` also writes a
  reduced copy (palette PNG, < 300 KB) for the documentation.

    .venv/bin/python scripts/check_listening_page.py RUN/evaluation \
        --screenshot /tmp/listening.png --docs docs/listening.png

Prints one line per check and a JSON summary; exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import soundfile as sf

AUDIO_STATE = """JSON.stringify(Array.prototype.map.call(document.querySelectorAll('audio'), function(a){
  return [a.getAttribute('src'), a.readyState, isFinite(a.duration) ? a.duration : null,
          a.error ? a.error.code : null, a.getAttribute('data-duration')];}))"""
IMAGE_STATE = """JSON.stringify(Array.prototype.map.call(document.images, function(i){
  return [i.getAttribute('src'), i.complete, i.naturalWidth];}))"""
LINKS = """JSON.stringify(Array.prototype.map.call(document.querySelectorAll('[src],[href]'), function(e){
  return e.getAttribute('src') || e.getAttribute('href');}))"""
SORT = """(function(key){var t=document.querySelector('table.lines'); if(!t) return null;
  var th=t.querySelector('th[data-sort="'+key+'"]'); if(!th) return null; var out=[];
  for(var k=0;k<2;k++){th.click(); out.push(Array.prototype.map.call(t.tBodies, function(r){
    return r.getAttribute('data-'+key);}));}
  t.querySelector('th[data-sort="n"]').click();
  return JSON.stringify(out);})"""
PLAY = """(async function(){var a=document.querySelector('audio[src*="/converted/"]')||document.querySelector('audio');
  if(!a) return JSON.stringify(null); a.muted=true;
  try{await a.play();}catch(e){return JSON.stringify('error: '+e.message);}
  await new Promise(function(r){setTimeout(r,1000);}); a.pause(); var t=a.currentTime; a.currentTime=0;
  return JSON.stringify(t);})()"""
FLAGGED = """JSON.stringify(Array.prototype.map.call(document.querySelectorAll('table.lines tbody.line.fail'),
  function(r){return r.rows[0].cells[0].querySelector('b').textContent;}))"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on fds 3 (commands) and 4 (replies)."""

    def __init__(self, chromium: str, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="zs2020-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds():   # in the child: the pipe ends on fds 3 and 4 (moved above 10 first: no clash)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer, self._next, self.events, self.session = b"", 0, [], None

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: bool = True, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(self._read())
        raise RuntimeError(f"no {method} within {timeout:.0f} s")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        value = result.get("result", {}).get("value")
        return json.loads(value) if isinstance(value, str) else value

    def open(self, url: str, timeout: float) -> None:
        target = next(t for t in self.send("Target.getTargets", session=False)["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", session=False, targetId=target["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def expected_flags(scores: dict) -> set[str]:
    """Converted lines that failed, computed here from scores.json (not from the page)."""
    out = set()
    for language in scores.get("2019", {}):
        speech = scores.get("zs2020_extras", {}).get(language, {}).get("speech") or {}
        for row in speech.get("per_line") or []:
            if ("sim_source_converted" in row and "sim_target_converted" in row
                    and row["sim_source_converted"] > row["sim_target_converted"]) \
                    or ("cer_converted" in row and "cer_source" in row and row["cer_converted"] > row["cer_source"]):
                out.add(row["name"])
    return out


def monotonic(values: list, ascending: bool) -> bool:
    nums = [float(v) for v in values if v not in (None, "")]
    blanks_last = all(v in (None, "") for v in values[len(nums):])
    return blanks_last and all((a <= b) if ascending else (a >= b) for a, b in zip(nums, nums[1:]))


def screenshot(browser: Browser, path: Path, width: int, height: int, anchor: str | None) -> None:
    top = 0
    if anchor:
        top = browser.evaluate(f"(function(){{var e=document.getElementById('{anchor}');"
                               "return e ? e.getBoundingClientRect().top + window.scrollY - 8 : 0;})()") or 0
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": top, "width": width, "height": height, "scale": 1})
    import base64
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def docs_copy(src: Path, dst: Path, width: int, limit: int = 300_000) -> int:
    """A reduced palette copy of the screenshot for the docs, under ``limit`` bytes."""
    from PIL import Image
    image = Image.open(src).convert("RGB")
    while True:
        small = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS) \
            if image.width > width else image
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dst, format="PNG", optimize=True)
        if dst.stat().st_size < limit or width < 600:
            return dst.stat().st_size
        width = int(width * 0.85)


def check(folder: Path, args) -> dict:
    page = folder / "index.html"
    if not page.is_file():
        raise SystemExit(f"{page}: no listening page (run `zs2020 evaluate` with --html)")
    problems, report = [], {"folder": str(folder)}
    browser = Browser(args.chromium, args.width, args.height)
    try:
        browser.open(page.resolve().as_uri(), args.timeout)
        links = browser.evaluate(LINKS)
        remote = [u for u in links if u.split(":", 1)[0].lower() in ("http", "https", "ftp", "ws", "wss")
                  or u.startswith("//")]
        problems += [f"network reference {u}" for u in remote]
        # every player: wait until each has its metadata (or an error), then compare durations
        end = time.time() + args.timeout
        while True:
            state = browser.evaluate(AUDIO_STATE)
            if all(s[1] >= 1 or s[3] for s in state) or time.time() > end:
                break
            time.sleep(0.25)
        report["players"] = len(state)
        bad_audio = 0
        for src, ready, duration, error, attr in state:
            wav = folder / unquote(src)
            inside = not os.path.isabs(unquote(src)) and ".." not in Path(unquote(src)).parts
            if not inside or not wav.is_file():
                problems.append(f"{src}: not a file inside the folder")
                bad_audio += 1
                continue
            try:
                info = sf.info(str(wav))
            except (RuntimeError, sf.LibsndfileError) as exc:
                problems.append(f"{src}: not a readable wav ({exc})")
                bad_audio += 1
                continue
            truth = info.frames / info.samplerate
            tolerance = args.tolerance_ms / 1000
            if error or duration is None or not math.isfinite(duration) or abs(duration - truth) > tolerance:
                problems.append(f"{src}: browser duration {duration} (error {error}, readyState {ready}) vs "
                                f"wav {truth:.4f} s")
                bad_audio += 1
            elif attr is None or abs(float(attr) - truth) > tolerance:
                problems.append(f"{src}: data-duration {attr!r} not written by the page's script")
                bad_audio += 1
        report["players_ok"] = len(state) - bad_audio
        images = browser.evaluate(IMAGE_STATE)
        broken = [src for src, complete, width in images if not complete or not width]
        problems += [f"{src}: image does not decode" for src in broken]
        report["images"], report["images_ok"] = len(images), len(images) - len(broken)
        played = browser.evaluate(PLAY)
        report["played_seconds"] = played
        if not isinstance(played, (int, float)) or played < 0.2:
            problems.append(f"a converted line did not play: {played}")
        requests = [e["params"]["request"]["url"] for e in browser.events
                    if e.get("method") == "Network.requestWillBeSent"]
        offsite = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
        problems += [f"request to {u}" for u in offsite]
        report["requests_not_file"] = len(offsite)
        # sorting: click a measure's head twice (ascending, then descending)
        sorted_by = {}
        for key in ("cer", "simt", "dnsmos"):
            orders = browser.evaluate(f"{SORT}('{key}')")
            if orders is None:
                continue
            sorted_by[key] = monotonic(orders[0], True) and monotonic(orders[1], False)
            if not sorted_by[key]:
                problems.append(f"rows not sorted by {key}: {orders}")
        report["sorted_by"] = sorted_by
        scores_path = folder / "scores.json"
        if scores_path.is_file():
            flagged, expected = set(browser.evaluate(FLAGGED)), expected_flags(json.loads(scores_path.read_text()))
            report["flagged"], report["flagged_expected"] = len(flagged), len(expected)
            if flagged != expected:
                problems.append(f"flagged rows {sorted(flagged ^ expected)} differ from scores.json's failures")
        if args.screenshot:
            screenshot(browser, args.screenshot, args.width, args.shot_height, args.anchor)
            report["screenshot"] = str(args.screenshot)
            if args.docs:
                report["docs_bytes"] = docs_copy(args.screenshot, args.docs, args.docs_width)
                report["docs"] = str(args.docs)
    finally:
        browser.close()
    files = [p for p in folder.rglob("*") if p.is_file()]
    report["bytes_without_wavs"] = sum(p.stat().st_size for p in files if p.suffix.lower() != ".wav")
    report["bytes_wavs"] = sum(p.stat().st_size for p in files if p.suffix.lower() == ".wav")
    if report["bytes_without_wavs"] > args.max_mb * 1e6:
        problems.append(f"the folder holds {report['bytes_without_wavs'] / 1e6:.1f} MB besides its wavs "
                        f"(limit {args.max_mb} MB)")
    report["problems"] = problems
    return report


def _seconds(value) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else repr(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluation", type=Path, help="An evaluation folder holding index.html (RUN/evaluation).")
    parser.add_argument("--in-place", action="store_true", help="Check the folder where it is, not a copy.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
                        or "chromium", help="The browser [default: chromium on PATH].")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for the page and its players.")
    parser.add_argument("--tolerance-ms", type=float, default=10.0)
    parser.add_argument("--max-mb", type=float, default=5.0, help="Size limit of the folder besides its wavs.")
    parser.add_argument("--screenshot", type=Path, help="Write a screenshot of the converted lines here.")
    parser.add_argument("--docs", type=Path, help="Also write a reduced copy (< 300 KB) for the docs here.")
    parser.add_argument("--docs-width", type=int, default=1400)
    parser.add_argument("--anchor", default="lines-english", help="Element id the screenshot starts at.")
    parser.add_argument("--width", type=int, default=1700)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--shot-height", type=int, default=900)
    args = parser.parse_args()
    if not Path(args.chromium).is_file() and not shutil.which(args.chromium):
        raise SystemExit(f"{args.chromium}: not found (Debian: apt-get install chromium)")
    source = args.evaluation
    with tempfile.TemporaryDirectory(prefix="zs2020-page-") as tmp:
        folder = source if args.in_place else Path(shutil.copytree(source, Path(tmp) / "moved" / source.name))
        report = check(folder, args)
    report["copied_from"] = None if args.in_place else str(source)
    for problem in report["problems"][:20]:
        print(f"FAIL {problem}")
    print(f"players {report['players_ok']}/{report['players']} load with their wav's duration "
          f"(±{args.tolerance_ms:g} ms), one played {_seconds(report.get('played_seconds'))}; "
          f"images {report['images_ok']}/{report['images']}; sorted {report['sorted_by']}; "
          f"flagged {report.get('flagged')} (scores.json: {report.get('flagged_expected')}); "
          f"{report['bytes_without_wavs'] / 1e6:.2f} MB besides {report['bytes_wavs'] / 1e6:.1f} MB of wavs")
    print(json.dumps({k: v for k, v in report.items() if k != "problems"} | {"problems": len(report["problems"])}))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
