#!/usr/bin/python3
"""Check that a mammopatch HTML report is self-contained and renders in headless Chromium.

The report (REPORT_DIR/index.html) is meant to be opened anywhere, offline, years later: every
chart is inline SVG, every image a data: URI, and nothing may be fetched from the network or
from files next to it.  This script checks that in two ways.

1. Static (html.parser on index.html):
   - the DOM contract the generator follows:
       section#preprocess > table#preprocess-table with >= 2 rows, unless p#preprocess-missing;
       section#metrics > table.metrics[data-variant=V][data-level=L] for every --variants V and
         L in patch, view, patient, each with a header row and a data row holding a number;
       >= --min-charts svg.chart (class roc, pr, training or bar), each with an aria-label or
         <title> and a <path>/<polyline>/<circle> carrying data points;
       >= 1 img.montage whose src is data:image/png;base64 decoding to a PNG (signature, IHDR
         with its CRC, width and height > 0, IEND; non-interlaced ones are decoded fully);
       section#config with a non-empty <pre>, and a non-empty #version;
   - self-containment: no src/href/xlink:href/srcset/action (nor poster/data/formaction/
     background/ping) and no CSS url(...) or @import may point anywhere but a data: URI or a
     #fragment (so no http:, https:, //, ftp:, file paths); no <script src>, no
     <link rel=stylesheet href>, no <meta http-equiv=refresh> to a URL.
2. Render (Chromium, --headless, with the network-quietening flags; about 2-3 s per run):
   - --screenshot at 1280x4000: the PNG exists, decodes, and is not blank (grey-level standard
     deviation > 2 and > 0.5% of the canvas non-white, grey < 250; 2% would fail a plain
     ~1800 px tall report on the 4000 px canvas).  Chromium exits 0 even when the page fails to load
     and then writes no screenshot, so the file itself is what is checked;
   - --log-net-log on the same run: every URL request in the net log must be file: or data:.
     Chromium never logs file: or data: loads there (they bypass the network stack), so any
     request the page causes shows up as an http(s)/ws(s)/ftp URL and fails the check.  The
     browser process also sends a few requests of its own to Google hosts (ListAccounts to
     accounts.google.com, a component-updater query to update.googleapis.com) that none of the
     flags tried stops; they carry the initiator "not an origin", where the page's requests carry
     "null" or "file://", and are listed but not failed unless --strict-netlog.  A net log cut
     off by a killed browser is read up to its last complete event;
   - --dump-dom (a second run, with its own net log): the DOM after loading still holds as many
     metrics/preprocess tables, svg charts and montages as the file.
Prints a summary; exit 0 on success, 1 naming every failed check, 77 (ctest's skip code) when
Chromium is not installed.

Usage: check_report.py REPORT_DIR [--variants baseline,gan] [--min-charts N]
                       [--screenshot OUT.png] [--strict-netlog] [--static-only]
"""
import argparse
import base64
import binascii
import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib
from pathlib import Path

import numpy as np

LEVELS = ("patch", "view", "patient")
CHART_KINDS = ("roc", "pr", "training", "bar", "fid", "is", "tsne")
SKIP_CODE = 77
CHROMIUM_TIMEOUT_S = 90
WINDOW = (1280, 4000)
# Blank-screenshot thresholds.  A text-and-tables report is mostly white: the sample one
# (~1800 px of content on the 4000 px canvas) has ~1.9% non-white pixels, a bare "Hello world"
# page 0.01% with grey std 1.7, a blank page 0% and std 0.
MIN_GREY_STD = 2.0
MIN_INK_FRACTION = 0.005
# --no-sandbox because this runs as root; the background-networking flags stop most (not all)
# of Chromium's own calls to Google hosts.  NetworkTimeServiceQuerying is the
# clients2.google.com/time query, which --disable-background-networking does not stop.
# --disable-dev-shm-usage because Debian's wrapper decides it from `findmnt`, which misparses
# when /dev/shm is mounted twice (as in containers: "[: ...: unexpected operator").
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-features=NetworkTimeServiceQuerying",
    "--disable-dev-shm-usage",
]
# Hosts Chromium's browser process contacts on its own (ListAccounts, component updater, spell
# check dictionaries); requests there with initiator "not an origin" are not the page's doing.
BROWSER_SERVICE_DOMAINS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")

URL_ATTRS = {"src", "href", "xlink:href", "srcset", "action",
             "poster", "data", "formaction", "background", "ping"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr"}
NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
# a cell that starts with a number: "0.912", "12.5%", "0.91 ± 0.02", "1e-3", but not "f1"
NUMERIC_CELL = re.compile(NUMBER.pattern + r"(?![\w.])")
CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.I | re.S)
CSS_IMPORT = re.compile(r"@import\s+(url\(\s*(['\"]?)(.*?)\2\s*\)|(['\"])(.*?)\4)", re.I | re.S)


# ---------------------------------------------------------------------------- tiny DOM

class Node:
    __slots__ = ("tag", "attrs", "children", "parent", "text")

    def __init__(self, tag, attrs=None, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs or {}), parent
        self.children, self.text = [], []

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        for n in self.iter():
            if n is self or (tag and n.tag != tag) or (cls and cls not in n.classes()):
                continue
            if all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                yield n

    def find(self, *a, **k):
        return next(self.find_all(*a, **k), None)

    def by_id(self, ident):
        return next((n for n in self.iter() if n.attrs.get("id") == ident), None)

    def get_text(self):
        return "".join(self.text) + "".join(c.get_text() for c in self.children)


class TreeBuilder(html.parser.HTMLParser):
    """html.parser into Node trees, closing the implied end tags a report is likely to use."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.cur = self.root
        self.raw_attrs = []   # every (tag, attr, value), for the self-containment check
        self.styles = []      # (where, css) for <style> contents and style="" values

    def _close(self, tag, stop=()):
        n = self.cur
        while n is not self.root and n.tag not in stop:
            if n.tag == tag:
                self.cur = n.parent
                return
            n = n.parent

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._close("td", ("tr", "table")), self._close("th", ("tr", "table"))
        elif tag == "tr":
            for t in ("td", "th", "tr"):
                self._close(t, ("table",))
        elif tag in ("p", "li", "option"):
            if self.cur.tag == tag:
                self.cur = self.cur.parent
        node = Node(tag, [(k, v if v is not None else "") for k, v in attrs], self.cur)
        self.cur.children.append(node)
        for k, v in node.attrs.items():
            self.raw_attrs.append((tag, k, v))
            if k == "style":
                self.styles.append((f"<{tag} style>", v))
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.cur = self.cur.parent

    def handle_endtag(self, tag):
        self._close(tag)

    def handle_data(self, data):
        self.cur.text.append(data)
        if self.cur.tag == "style":
            self.styles.append(("<style>", data))


def parse_html(text):
    b = TreeBuilder()
    b.feed(text)
    b.close()
    return b


# ---------------------------------------------------------------------------- PNG

def png_info(data):
    """(width, height, bit_depth, color_type, interlace) after checking the PNG's structure."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack(">I", data[8:12])[0] != 13:
        raise ValueError("first chunk is not a 13-byte IHDR")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise ValueError("IHDR CRC mismatch")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if w == 0 or h == 0:
        raise ValueError(f"empty image {w}x{h}")
    if b"IEND" not in data[-12:]:
        raise ValueError("no IEND chunk at the end (truncated?)")
    return w, h, depth, ctype, interlace


def unfilter(lines, filters, bpp):
    """Undo PNG row filters (None, Sub, Up, Average, Paeth) for all rows at once.

    Byte (y, x) depends on (y, x-bpp), (y-1, x) and (y-1, x-bpp) only, so every pixel on an
    anti-diagonal y + x/bpp = k can be done together: h + w numpy steps instead of h * w."""
    h, stride = lines.shape
    if filters.max(initial=0) > 4:
        raise ValueError(f"bad filter type {filters.max()}")
    w = stride // bpp
    raw = lines.reshape(h, w, bpp).astype(np.int32)
    out = np.zeros((h + 1, w + 1, bpp), np.int32)     # a zero row above, a zero column left
    f = filters.astype(np.int32)
    for k in range(h + w - 1):
        ys = np.arange(max(0, k - w + 1), min(h - 1, k) + 1)
        xs = k - ys
        a, b, c = out[ys + 1, xs], out[ys, xs + 1], out[ys, xs]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        fy = f[ys][:, None]
        pred = np.select([fy == 1, fy == 2, fy == 3, fy == 4], [a, b, (a + b) >> 1, paeth], 0)
        out[ys + 1, xs + 1] = (raw[ys, xs] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def png_decode(data):
    """Decode a non-interlaced PNG to a uint8 array (h, w, channels); None if unsupported."""
    w, h, depth, ctype, interlace = png_info(data)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if channels is None or interlace or depth == 16 and ctype == 3:
        return None
    pos, idat, palette = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    bpp = max(1, channels * depth // 8)            # bytes per pixel, for the filters
    stride = (w * channels * depth + 7) // 8
    if raw.size < h * (stride + 1):
        raise ValueError("image data shorter than IHDR says")
    rows = raw[:h * (stride + 1)].reshape(h, stride + 1)
    out = unfilter(rows[:, 1:], rows[:, 0], bpp).reshape(h, stride)
    if depth == 16:
        px = out.reshape(h, w, channels * 2)[:, :, ::2]
    elif depth < 8:
        bits = np.unpackbits(out, axis=1)[:, :w * depth].reshape(h, w, depth)
        px = (bits * (1 << np.arange(depth - 1, -1, -1))).sum(-1).astype(np.uint8)
        px = px[:, :, None] if ctype == 3 else (px * (255 // (2 ** depth - 1)))[:, :, None]
    else:
        px = out.reshape(h, w, channels)
    if ctype == 3:
        if palette is None:
            raise ValueError("palette image without PLTE")
        px = palette[px[:, :, 0]]
    return px


def to_grey(px):
    """Grey levels 0..255 (float), alpha composited over white."""
    px = px.astype(np.float64)
    c = px.shape[2]
    colour, alpha = (px[:, :, :c - 1], px[:, :, c - 1:] / 255.0) if c in (2, 4) else (px, None)
    grey = colour[:, :, 0] if colour.shape[2] == 1 else colour @ [0.299, 0.587, 0.114]
    if alpha is not None:
        grey = grey * alpha[:, :, 0] + 255.0 * (1 - alpha[:, :, 0])
    return grey


# ---------------------------------------------------------------------------- static checks

def check_preprocess(doc, fails):
    sec = doc.find("section", id="preprocess")
    table = sec.find("table", id="preprocess-table") if sec else None
    if table is not None:
        rows = len(list(table.find_all("tr")))
        if rows < 2:
            fails.append(f"preprocess: #preprocess-table has {rows} row(s), needs >= 2")
        return 1
    if doc.find("p", id="preprocess-missing") is None:
        fails.append("preprocess: no section#preprocess holding table#preprocess-table "
                     "(and no p#preprocess-missing to excuse it)")
    return 0


def check_metrics(doc, variants, fails):
    sec = doc.find("section", id="metrics")
    if sec is None:
        fails.append("metrics: no section#metrics")
        return 0
    found = 0
    for v in variants:
        for lvl in LEVELS:
            tables = [t for t in sec.find_all("table", cls="metrics", data_variant=v)
                      if t.attrs.get("data-level") == lvl]
            if not tables:
                fails.append(f'metrics: no table.metrics[data-variant="{v}"][data-level="{lvl}"]'
                             " in section#metrics")
                continue
            found += 1
            rows = list(tables[0].find_all("tr"))
            in_head = [r.parent.tag == "thead" for r in rows]
            header = [r for r, h in zip(rows, in_head)
                      if h or (r.find("th") is not None and r.find("td") is None)]
            data = [r for r, h in zip(rows, in_head) if not h and any(
                NUMERIC_CELL.match(td.get_text().strip()) for td in r.find_all("td"))]
            if not header:
                fails.append(f"metrics: table {v}/{lvl} has no header row")
            if not data:
                fails.append(f"metrics: table {v}/{lvl} has no data row with a number")
    return found


def chart_has_points(svg):
    """A <polyline> with >= 2 points, a <circle> marker (a series of one point, e.g. one
    epoch), or a <path> that moves and then draws ("M20 60H200" counts: a bar chart without
    error bars has only its baseline path, the bars being <rect>s)."""
    for n in svg.iter():
        if n.tag == "polyline" and len(NUMBER.findall(n.attrs.get("points", ""))) >= 4:
            return True
        if n.tag == "circle" and "cx" in n.attrs and "cy" in n.attrs:
            return True
        d = n.attrs.get("d", "")
        nums = len(NUMBER.findall(d))
        if n.tag == "path" and (nums >= 4 or nums == 3 and re.search(r"[HhVv]", d)):
            return True
    return False


def check_charts(doc, min_charts, fails):
    charts = list(doc.find_all("svg", cls="chart"))
    for i, svg in enumerate(charts, 1):
        label = svg.attrs.get("aria-label", "").strip() or (
            svg.find("title").get_text().strip() if svg.find("title") else "")
        name = f"chart #{i} ({label or svg.attrs.get('class')!r})"
        if not set(svg.classes()) & set(CHART_KINDS):
            fails.append(f"charts: {name} has none of the classes {', '.join(CHART_KINDS)}")
        if not label:
            fails.append(f"charts: {name} has neither aria-label nor <title>")
        if not chart_has_points(svg):
            fails.append(f"charts: {name} has no <path>/<polyline> with data points")
    if len(charts) < min_charts:
        fails.append(f"charts: {len(charts)} svg.chart element(s), need >= {min_charts}")
    return len(charts)


def check_montages(doc, fails):
    imgs = list(doc.find_all("img", cls="montage"))
    good = 0
    for i, img in enumerate(imgs, 1):
        src = img.attrs.get("src", "").strip()
        m = re.match(r"data:image/png;base64,", src, re.I)
        if not m:
            fails.append(f"montage #{i}: src is not data:image/png;base64,... ({src[:40]!r})")
            continue
        try:
            data = base64.b64decode(re.sub(r"\s+", "", src[m.end():]), validate=True)
            w, h, *_ = png_info(data)
            png_decode(data)   # full decode where supported; raises on corrupt data
            good += 1
        except (ValueError, binascii.Error, zlib.error, struct.error) as e:
            fails.append(f"montage #{i}: embedded PNG is invalid: {e}")
    if not imgs:
        fails.append("montage: no img.montage")
    return good


def check_config(doc, fails):
    sec = doc.find("section", id="config")
    pre = sec.find("pre") if sec else None
    if pre is None or not pre.get_text().strip():
        fails.append("config: no section#config with a non-empty <pre>")
    ver = doc.by_id("version")
    if ver is None or not ver.get_text().strip():
        fails.append("config: no element #version with text")


def compute_lines(doc, fails, note_id, lead, noun, expected, where):
    """One note on what computed a set of runs (mp_report.c compute_note; it begins with lead or
    says none is recorded): each engine line (a <code>, naming its backend) with its count of
    runs; the counts and the unrecorded runs sum to expected, an int or a (least, most) range
    (what `where` lists).  The number of engine lines."""
    note = doc.by_id(note_id)
    if note is None:
        fails.append(f"{note_id}: no #{note_id} note in the {where}")
        return 0
    text = " ".join(note.get_text().split())
    lines = [" ".join(c.get_text().split()) for c in note.find_all("code")]  # (a list)
    counts = [int(n) for n in re.findall(rf"\((\d+) {noun}s?; ", text)]
    unrec = re.search(rf"(\d+) {noun}s? without a record|these (\d+) {noun}s? is not recorded|this ({noun}) is not", text)
    unrec_n = (1 if unrec.group(3) else int(unrec.group(1) or unrec.group(2))) if unrec else 0
    if not (text.startswith(lead) or text.startswith("What computed th")) or len(counts) != len(lines) \
            or not (lines or unrec):
        fails.append(f"{note_id}: {text!r}")
    elif not all(re.match(r"(cpu|ref|cuda): \S", x) for x in lines):
        fails.append(f"{note_id}: an engine line names no backend: {lines}")
    elif lines and not re.search(r"batch-norm statistics over \d+ samples?,|batch-norm groups or gradient means differ", text):
        fails.append(f"{note_id}: the batch-norm statistics groups are not named: {text!r}")
    elif not (expected[0] <= sum(counts) + unrec_n <= expected[1] if isinstance(expected, tuple)
              else sum(counts) + unrec_n == expected):
        fails.append(f"{note_id}: {sum(counts) + unrec_n} {noun}s in {text!r}, the {where} has {expected}")
    return len(lines)


def check_compute(doc, fails):
    """What trained the jobs (the jobs section's #compute note: its counts against the jobs the
    jobs table lists as done or reused) and, where the report has a GAN section, what trained
    the sweep's runs (#gan-compute: at least its completed runs, at most its rows; a run that
    failed or did not run may have left no gan.json)."""
    scored = 0
    table = doc.by_id("jobs-table")
    for tr in table.find_all("tr") if table is not None else []:
        cells = list(tr.find_all("td"))
        if len(cells) > 2 and cells[2].get_text().strip() in ("done", "reused"):
            scored += 1
    n = compute_lines(doc, fails, "compute", "Trained on ", "job", scored, "jobs table's done or reused jobs")
    sweep = doc.by_id("gan-sweep")
    if sweep is not None:
        status = [cells[3].get_text().strip() for cells in (list(tr.find_all("td")) for tr in sweep.find_all("tr"))
                  if len(cells) > 3]
        n += compute_lines(doc, fails, "gan-compute", "The sweep's runs trained on ", "run",
                           (status.count("completed"), len(status)), "sweep table")
    return n


def bad_reference(url):
    """Why url would load something from outside the page, or None for data: / #fragment."""
    u = url.strip()
    if u.lower().startswith("data:") or u.startswith("#"):
        return None
    if not u:
        return "empty reference (loads the page itself)"
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", u)
    if scheme:
        return f"{scheme.group(1).lower()}: URL"
    if u.startswith("//"):
        return "protocol-relative URL"
    return "file path"


def srcset_urls(value):
    for tok in value.split():
        tok = tok.rstrip(",")
        if tok and not re.fullmatch(r"\d+(\.\d+)?[wxh]", tok):
            yield tok


def check_self_contained(builder, doc, fails):
    refs = []
    for tag, attr, value in builder.raw_attrs:
        if attr in URL_ATTRS:
            for u in (srcset_urls(value) if attr == "srcset" else [value]):
                refs.append((f"<{tag} {attr}>", u))
        elif attr != "style":                      # e.g. fill="url(#gradient)"
            for m in CSS_URL.finditer(value):
                refs.append((f"<{tag} {attr}> url()", m.group(2)))
    for where, css in builder.styles:
        for m in CSS_URL.finditer(css):
            refs.append((f"{where} url()", m.group(2)))
        for m in CSS_IMPORT.finditer(css):
            if not m.group(1).lower().startswith("url"):   # @import url(...) is found above
                refs.append((f"{where} @import", m.group(5)))
    for meta in doc.find_all("meta"):
        if meta.attrs.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\"]*)", meta.attrs.get("content", ""), re.I)
            if m:
                refs.append(("<meta refresh>", m.group(1)))
    bad = 0
    for where, u in refs:
        why = bad_reference(u)
        if why:
            bad += 1
            fails.append(f"self-contained: {where} points outside the page ({why}): {u[:100]}")
    for s in doc.find_all("script"):
        if "src" in s.attrs:
            fails.append(f"self-contained: <script src={s.attrs['src'][:80]!r}>")
    for link in doc.find_all("link"):
        if "stylesheet" in link.attrs.get("rel", "").lower().split() and "href" in link.attrs:
            fails.append(f"self-contained: <link rel=stylesheet href={link.attrs['href'][:80]!r}>")
    return len(refs), bad


def dom_counts(doc):
    return {
        "metrics tables": len(list(doc.find_all("table", cls="metrics"))),
        "preprocess tables": len(list(doc.find_all("table", id="preprocess-table"))),
        "svg charts": len(list(doc.find_all("svg", cls="chart"))),
        "montages": len(list(doc.find_all("img", cls="montage"))),
    }


def static_checks(index, variants, min_charts, fails):
    try:
        builder = parse_html(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        fails.append(f"static: cannot read {index}: {e}")
        return None, {}
    doc = builder.root
    if doc.find("html") is None and doc.find("body") is None:
        fails.append("static: index.html holds no <html> or <body>")
    info = {
        "preprocess tables": check_preprocess(doc, fails),
        "metrics tables": check_metrics(doc, variants, fails),
        "svg charts": check_charts(doc, min_charts, fails),
        "valid montages": check_montages(doc, fails),
    }
    check_config(doc, fails)
    info["engine lines"] = check_compute(doc, fails)
    info["references"], info["bad references"] = check_self_contained(builder, doc, fails)
    return doc, info


# ---------------------------------------------------------------------------- Chromium

def find_chromium(explicit):
    for cand in ([explicit] if explicit else
                 [os.environ.get("CHROMIUM"), "chromium", "chromium-browser"]):
        if cand and (shutil.which(cand) or (os.path.isfile(cand) and os.access(cand, os.X_OK))):
            return shutil.which(cand) or cand
    return None


def run_chromium(chromium, extra, url, workdir, tag):
    """Run one headless Chromium with a fresh profile; (rc, stdout bytes, stderr text, seconds)."""
    profile = tempfile.mkdtemp(prefix=f"profile-{tag}-", dir=workdir)
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the session we started: browser + its children
        out, err = proc.communicate()
        rc = "timeout"
    return rc, out, err.decode(errors="replace"), time.monotonic() - t0


def stderr_tail(err, n=6):
    lines = [l for l in err.splitlines()
             if l.strip() and "dbus" not in l and "unexpected operator" not in l]
    return "\n    ".join(lines[-n:])


def read_netlog(path):
    """(events, constants, truncated) from a Chromium net log, even a truncated one.

    The file is {"constants": {...},\\n"events": [\\n{event},\\n...],\\n"polledData": {...}} written
    as it goes, so a killed browser leaves it cut off mid-event: decode events one by one and
    stop at the first incomplete one."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        d = json.loads(text)
        return d.get("events", []), d.get("constants", {}), False
    except json.JSONDecodeError:
        pass
    dec = json.JSONDecoder()
    constants = {}
    m = re.match(r'\s*\{\s*"constants"\s*:\s*', text)
    if m:
        try:
            constants, _ = dec.raw_decode(text, m.end())
        except json.JSONDecodeError:
            pass
    m = re.search(r'"events"\s*:\s*\[', text)
    events = []
    if m:
        pos = m.end()
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] == "]":
                break
            try:
                ev, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                break           # the trailing incomplete event
            events.append(ev)
    return events, constants, True


def netlog_requests(events, constants):
    """{url: set of initiators} for every URL the net log shows a request (or connection) for."""
    names = {v: k for k, v in constants.get("logEventTypes", {}).items()}
    sources = {}
    for ev in events:
        p = ev.get("params") or {}
        url = p.get("url")
        if not isinstance(url, str) or not url:
            continue
        s = sources.setdefault((ev.get("source") or {}).get("id"), {"urls": set(), "init": set()})
        s["urls"].add(url)
        if "initiator" in p and names.get(ev.get("type"), "URL_REQUEST_START_JOB") \
                == "URL_REQUEST_START_JOB":
            s["init"].add(p["initiator"])
    urls = {}
    for s in sources.values():
        for u in s["urls"]:
            urls.setdefault(u, set()).update(s["init"])
    return urls


def is_browser_background(url, initiators):
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return (initiators <= {"not an origin"}
            and any(host == d or host.endswith("." + d) for d in BROWSER_SERVICE_DOMAINS))


def check_netlog(paths, strict, fails):
    urls, truncated = {}, []
    for path in paths:
        if not os.path.exists(path):
            fails.append(f"net log: Chromium wrote no net log ({path})")
            continue
        events, constants, trunc = read_netlog(path)
        if trunc:
            truncated.append(os.path.basename(path))
        if not events:
            fails.append(f"net log: no events could be read from {os.path.basename(path)}")
        for u, init in netlog_requests(events, constants).items():
            urls.setdefault(u, set()).update(init)
    remote = {u: i for u, i in urls.items()
              if urllib.parse.urlsplit(u).scheme.lower() not in ("file", "data")}
    background = sorted(u for u, i in remote.items() if is_browser_background(u, i))
    offending = sorted(u for u in remote if strict or u not in background)
    for u in offending:
        who = ", ".join(sorted(remote[u])) or "unknown"
        fails.append(f"net log: request to {u[:160]} (initiator: {who})")
    return {"urls": len(urls), "background": background, "offending": offending,
            "truncated": truncated}


def render_checks(chromium, index, static_doc, screenshot, strict_netlog, fails):
    url = index.resolve().as_uri()
    work = tempfile.mkdtemp(prefix="check_report-")
    info = {}
    try:
        shot = Path(screenshot).resolve() if screenshot else Path(work, "screenshot.png")
        if shot.exists():
            shot.unlink()
        logs = [os.path.join(work, "netlog-screenshot.json"), os.path.join(work, "netlog-dom.json")]
        netflags = ["--net-log-capture-mode=Default"]

        # One browser at a time: two in parallel were slower on a 2-core machine.
        rc, _, err, secs = run_chromium(chromium, [
            f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
            f"--log-net-log={logs[0]}", *netflags], url, work, "shot")
        info["screenshot run"] = f"{secs:.1f} s"
        if rc != 0:
            fails.append(f"render: chromium --screenshot exited {rc}\n    {stderr_tail(err)}")
        elif not shot.exists():
            fails.append(f"render: chromium --screenshot wrote no file\n    {stderr_tail(err)}")
        check_screenshot(shot, fails, info)

        rc, out, err, secs = run_chromium(chromium, [
            "--dump-dom", f"--log-net-log={logs[1]}", *netflags], url, work, "dom")
        info["dump-dom run"] = f"{secs:.1f} s"
        if rc != 0 or not out.strip():
            fails.append(f"render: chromium --dump-dom exited {rc} with {len(out)} bytes of DOM"
                         f"\n    {stderr_tail(err)}")
        else:
            want = dom_counts(static_doc)
            got = dom_counts(parse_html(out.decode("utf-8", errors="replace")).root)
            for k in want:
                if got[k] != want[k]:
                    fails.append(f"render: rendered DOM holds {got[k]} {k}, the file {want[k]}")
            info["rendered DOM"] = ", ".join(f"{v} {k}" for k, v in got.items())

        info["net"] = check_netlog(logs, strict_netlog, fails)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info


def check_screenshot(shot, fails, info):
    if not shot.exists() or shot.stat().st_size == 0:
        return   # already reported with Chromium's own message
    data = shot.read_bytes()
    try:
        w, h, *_ = png_info(data)
        px = png_decode(data)
    except (ValueError, zlib.error, struct.error) as e:
        fails.append(f"screenshot: {shot} is not a valid PNG: {e}")
        return
    info["screenshot"] = f"{w}x{h}, {len(data)} bytes"
    if px is None:
        fails.append("screenshot: cannot decode this PNG variant to test for blankness")
        return
    grey = to_grey(px)
    inked = grey < 250
    std, ink = float(grey.std()), float(inked.mean())
    rows = np.flatnonzero(inked.any(axis=1))
    info["screenshot ink"] = (f"grey std {std:.1f}, {100 * ink:.1f}% non-white pixels"
                              + (f", content in rows {rows[0]}-{rows[-1]}" if rows.size else ""))
    if std <= MIN_GREY_STD:
        fails.append(f"screenshot: looks blank (grey-level std {std:.2f} <= {MIN_GREY_STD})")
    if ink <= MIN_INK_FRACTION:
        fails.append(f"screenshot: looks blank ({100 * ink:.2f}% non-white pixels"
                     f" <= {100 * MIN_INK_FRACTION}%)")


# ---------------------------------------------------------------------------- main

def print_render_summary(chromium, r, args):
    print(f"render: {chromium}; screenshot run {r.get('screenshot run')}, "
          f"dump-dom run {r.get('dump-dom run')}")
    if "screenshot" in r:
        print(f"  screenshot: {r['screenshot']}; {r.get('screenshot ink', '')}"
              + (f" (kept: {args.screenshot})" if args.screenshot else ""))
    if "rendered DOM" in r:
        print(f"  rendered DOM: {r['rendered DOM']}")
    net = r["net"]
    line = (f"  net log: {net['urls']} distinct URL(s) requested, {len(net['offending'])} "
            f"offending, {len(net['background'])} from Chromium itself")
    if net["background"] and not args.strict_netlog:
        hosts = sorted({urllib.parse.urlsplit(u).hostname for u in net["background"]})
        line += f" (not counted: {', '.join(hosts)})"
    if net["truncated"]:
        line += f"; read up to the last full event: {', '.join(net['truncated'])}"
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report_dir", type=Path)
    ap.add_argument("--variants", default="baseline",
                    help="comma-separated model variants that need metrics tables")
    ap.add_argument("--min-charts", type=int, default=3)
    ap.add_argument("--screenshot", help="keep the screenshot here (default: a temp file)")
    ap.add_argument("--chromium", help="Chromium binary (default: $CHROMIUM or chromium on PATH)")
    ap.add_argument("--strict-netlog", action="store_true",
                    help="also fail on Chromium's own background requests to Google hosts")
    ap.add_argument("--static-only", action="store_true",
                    help="only the static checks (no Chromium needed)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    chromium = None
    if not args.static_only:
        chromium = find_chromium(args.chromium)
        if chromium is None and args.chromium:
            print(f"FAIL: --chromium {args.chromium} is not an executable")
            return 1
        if chromium is None:
            print("SKIP: chromium not installed")
            return SKIP_CODE

    t0 = time.monotonic()
    fails = []
    index = args.report_dir / "index.html"
    if not index.is_file():
        print(f"FAIL: {index} does not exist")
        return 1
    doc, info = static_checks(index, variants, args.min_charts, fails)
    print(f"static: {info.get('preprocess tables', 0)} preprocess table, "
          f"{info.get('metrics tables', 0)}/{3 * len(variants)} metrics tables "
          f"({','.join(variants)} x {','.join(LEVELS)}), {info.get('svg charts', 0)} svg charts, "
          f"{info.get('valid montages', 0)} valid montage(s), {info.get('references', 0)} "
          f"URL references ({info.get('bad references', 0)} outside the page)")
    if doc is not None and chromium:
        r = render_checks(chromium, index, doc, args.screenshot, args.strict_netlog, fails)
        print_render_summary(chromium, r, args)
    print(f"time: {time.monotonic() - t0:.1f} s")
    if fails:
        print(f"FAIL: {len(fails)} check(s) failed:")
        for f in fails:
            print(f"  - {f}")
        return 1
    print("OK: report is self-contained" + (" and renders" if chromium else " (static checks only)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
