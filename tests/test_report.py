"""`threegate report`: the page tested as a reader would meet it.

A folder is built from real outputs (a `threegate verify` run, a `threegate compare` run on tiny safetensors, two
contract-valid simulation results with matplotlib figures, a study with `report.md`); the page must parse with
balanced tags, refer to nothing outside itself, carry every image as a decodable PNG, list every claim of every
source with an allowed verdict, escape what it shows, survive corrupt files, and render in headless Chromium.
"""

import base64
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sims._contract import Claim, write_result
from threegate.checkpoints import save_safetensors
from threegate.cli import main
from threegate.report import VERDICTS, build_report, discover, render_markdown
from threegate.report.claims import verify_claim
from threegate.report.embed import PNG_SIGNATURE, png_size

BF16 = ml_dtypes.bfloat16
CHROMIUM = Path("/usr/bin/chromium")
EVIL = '<script>alert("x")</script> & <b>bold</b>'
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


# --- building a results folder from real outputs ------------------------------------------------------


def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(4, 2.5), dpi=60)
    ax.plot(np.cumsum(rng.standard_normal(50)))
    ax.set_title(f"figure {seed}")
    fig.savefig(path)
    plt.close(fig)


def _sim(
    out: Path, name: str, claims: list[Claim], figures: list[str], captions=None, summary=None
):
    folder = out / name
    folder.mkdir(parents=True)
    for i, f in enumerate(figures):
        _png(folder / f, i)
    extra = {k: v for k, v in (("captions", captions), ("summary", summary)) if v is not None}
    extra = extra or None
    return write_result(
        folder,
        name=name,
        size="quick",
        seed=0,
        seconds=1.5,
        claims=claims,
        figures=figures,
        extra=extra,
    )


def _compare(root: Path, out: Path) -> None:
    rng = np.random.default_rng(3)
    names = [f"model.layers.{i}.self_attn.q_proj.weight" for i in (0, 1)] + [
        f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)
    ]
    base = {n: (rng.standard_normal((24, 16)) * 0.05).astype(BF16) for n in names}
    save_safetensors(base, root / "base.safetensors")
    tuned = []
    for t in ("a", "b"):
        moved = {}
        for n, w in base.items():
            bits = w.view(np.uint16).copy().ravel()
            idx = rng.choice(w.size, 40, replace=False)
            bits[idx] += np.uint16(1)  # one ULP away from zero
            moved[n] = bits.reshape(w.shape).view(BF16)
        save_safetensors(moved, root / f"tuned_{t}.safetensors")
        tuned.append(str(root / f"tuned_{t}.safetensors"))
    rc = main(["compare", str(root / "base.safetensors"), *tuned, "--out", str(out), "--k", "4"])
    assert rc == 0


SIM_A = [
    Claim(
        "S2.ratio_to_one",
        "the KL ratio tends to 1 as beta grows",
        "1.003 at beta=64 (CI 0.99..1.01)",
        "agrees",
    ),
    Claim("S2.evil", EVIL, "observed " + EVIL, "inconclusive"),
]
SIM_B = [
    Claim(
        "S3.rl_rotates_less",
        "RL rotates the top-k subspace less than SFT",
        "0.2° vs 3.1°",
        "agrees",
    ),
    Claim(
        "S3.overlap",
        "RL overlap with M_princ is sub-random",
        "0.52 vs random 0.50 (CI 0.49..0.55)",
        "disagrees",
    ),
]
SUMMARY_B = {
    "max_ratio": 0.25,
    "premise_all": True,
    "per_eps": {"0.1": 0.5, "0.2": 1.0},
    "skip": [1],
}
STUDY_CLAIMS = [
    {
        "id": "sparsity",
        "paper": "RL sparsity >> SFT",
        "observed": "0.93 vs 0.41",
        "verdict": "agrees",
    },
    {
        "id": "curvature",
        "paper": "curvature higher on principal weights",
        "observed": "1.1x (CI 0.9..1.3)",
        "verdict": "inconclusive",
    },
]
STUDY_MD = """# SmolLM2 study

Claims of the paper, **measured** on a *small* model; `snake_case_names` stay as they are.

| claim | observed | verdict |
|---|---:|---|
| sparsity | 0.93 vs 0.41 | agrees |
| a <i>raw</i> tag | 1 \\| 2 | inconclusive |

## Figures

![update sparsity over steps](fig_sparsity.png)

See [the paper](https://arxiv.org/abs/2511.08567) and [the claims](#claims).

```
threegate study smollm2 --preset quick
```

- one <script>bad()</script>
- two
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    assert (
        main(["verify", "--only", "3.3", "E.1", "--size", "tiny", "--out", str(out / "verify")])
        == 0
    )
    _sim(
        out / "sims", "gate1-leash", SIM_A, ["kl_ratio.png"], {"kl_ratio.png": "ratio against beta"}
    )
    _sim(out / "sims", "gate2-geometry", SIM_B, ["angles.png", "nss.png"], summary=SUMMARY_B)
    study = out / "study"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"claims": STUDY_CLAIMS}))
    (study / "report.md").write_text(STUDY_MD)
    _png(study / "fig_sparsity.png", 7)
    _png(study / "fig_extra.png", 8)
    ckpt = tmp_path_factory.mktemp("ckpt")
    _compare(ckpt, out / "compare")
    return out


@pytest.fixture(scope="module")
def page(results) -> str:
    assert main(["report", str(results)]) == 0
    return (results / "report.html").read_text(encoding="utf-8")


# --- reading the page -------------------------------------------------------------------------------


class _Structure(HTMLParser):
    """Tag balance, every attribute, and the text of each row of the top claims table."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.imgs: list[dict] = []
        self.section: str | None = None
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
        if tag == "img":
            self.imgs.append(a)
        if tag == "section":
            self.section = a.get("id")
        if self.section == "claims":
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Structure:
    p = _Structure()
    p.feed(text)
    p.close()
    return p


def _expected_claims(results: Path) -> set[tuple[str, str, str]]:
    """(source, id, verdict) of every claim in the folder, read from the files themselves."""
    want = set()
    for line in (results / "verify" / "verify.jsonl").read_text().splitlines():
        s = json.loads(line)
        verdict = {"holds": "agrees", "holds-asymptotically": "agrees"}.get(
            s["status"], "disagrees"
        )
        want.add(("verify", s["id"], verdict))
    errata = json.loads((results / "verify" / "errata.json").read_text())
    for table in {e["source"] for e in errata["tables"]}:
        bad = any(e["verdict"] == "erratum" for e in errata["tables"] if e["source"] == table)
        want.add(("verify", f"{table} Avg", "disagrees" if bad else "agrees"))
    for label, claims in (("S2 gate1-leash", SIM_A), ("S3 gate2-geometry", SIM_B)):
        want |= {(label, c.id, c.verdict) for c in claims}
    want |= {("study", c["id"], c["verdict"]) for c in STUDY_CLAIMS}
    return want


# --- the tests ---------------------------------------------------------------------------------------


def test_page_parses_with_balanced_tags(page):
    p = _parse(page)
    assert p.errors == [] and p.stack == []
    assert page.startswith("<!DOCTYPE html>")
    # in-page links land: ids are unique and every #target exists
    ids = [v for _, k, v in p.attrs if k == "id"]
    assert len(ids) == len(set(ids))
    targets = {v[1:] for _, k, v in p.attrs if k == "href"}
    assert targets and targets <= set(ids)


def test_page_refers_to_nothing_outside_itself(page):
    low = page.lower()
    for bad in ("http://", "https://", "<script", "<link", "@import", "url(", "<iframe"):
        assert bad not in low, bad
    p = _parse(page)
    assert p.attrs  # the parser saw the page
    for tag, key, value in p.attrs:
        if key == "src":
            assert value.startswith("data:image/png;base64,"), (tag, value[:40])
        if key == "href":
            assert value.startswith("#"), value
        assert not value.startswith("//")


def test_every_image_is_an_embedded_png_that_decodes(page, results):
    imgs = _parse(page).imgs
    pngs = [
        *results.glob("sims/*/*.png"),
        *results.glob("study/*.png"),
        *results.glob("compare/*.png"),
    ]
    assert len(pngs) >= 6 and len(imgs) == len(pngs)  # every figure of every source, once
    seen = set()
    for img in imgs:
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        w, h = png_size(data)
        assert (int(img["width"]), int(img["height"])) == (w, h)
        assert mpimg.imread(io.BytesIO(data), format="png").shape[:2] == (h, w)
        seen.add(data)
    assert seen == {p.read_bytes() for p in pngs}


def test_top_table_lists_every_claim_of_every_source_with_a_verdict(page, results):
    rows = _parse(page).rows
    assert rows[0] == ["source", "claim", "paper", "observed", "verdict"]
    got = {(r[0], r[1], r[4]) for r in rows[1:]}
    assert all(r[4] in VERDICTS for r in rows[1:])
    assert len(rows) - 1 == len(got)  # no claim twice
    assert got == _expected_claims(results)
    verify_rows = {r[1]: r for r in rows[1:] if r[0] == "verify"}
    assert "corrected form" in verify_rows["3.3"][3]  # the erratum names its corrected form


def test_text_from_files_is_escaped(page):
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<b>bold</b>" not in page
    assert "&lt;script&gt;bad()&lt;/script&gt;" in page  # from report.md
    assert "a &lt;i&gt;raw&lt;/i&gt; tag" in page
    assert (
        '<td><span class="pill inconclusive">inconclusive</span></td>' in page
    )  # a verdict cell in report.md


def test_sections_carry_their_content(page):
    # the theorem check: the errata with the exact counter-example of E.1 (the 253 binade-edge equalities)
    assert "&quot;equalities_at_binade_edges&quot;: 253" in page and "Table 5" in page
    # each simulation under its registry label and one-line caption; the study's markdown; compare's tables
    assert "S2 gate1-leash" in page and "ratio against beta" in page
    # a result's summary object becomes a table of its scalars (lists are left to the data files)
    assert '<td>per_eps [0.2]</td><td class="num">1</td>' in page and "<td>premise_all</td>" in page
    assert "<td>skip</td>" not in page
    assert "<h4>SmolLM2 study</h4>" in page and "<strong>measured</strong>" in page
    assert "<code>snake_case_names</code>" in page
    assert (
        'the paper <span class="url">(arxiv.org/abs/2511.08567)</span>' in page
    )  # text, not a link
    assert "Table 1: update sparsity" in page and "Table 2: Jaccard" in page
    assert "fig5_overlap.png" in page
    # S1 and S4–S8 have no result here: named as not found, like the compare-less or study-less case
    assert "S1 precision-lr" in page and "S8 clip-leash" in page


def test_verify_status_maps_to_verdicts():
    cases = {
        "holds": "agrees",
        "holds-asymptotically": "agrees",
        "violated-as-stated": "disagrees",
        "violated": "disagrees",
        "checker-crashed": "inconclusive",
    }
    for status, verdict in cases.items():
        row = verify_claim({"id": "x", "status": status, "statement": "s"}, "verify", "a")
        assert row.verdict == verdict and row.paper == "s"


def test_markdown_subset():
    def image(src, alt):
        return f'<img src="data:{src}" alt="{alt}">' if src == "ok.png" else None

    md = (
        "## Title with `code`\n\npara *em* and **strong** and a_b_c\nsecond line\n\n"
        "| a | b |\n|:--|--:|\n| 1 | <x> |\n\n1. one\n2. two\n\n> quoted\n\n---\n\n"
        "![alt](ok.png) ![missing](no.png) [out](https://example.org) [in](#claims)\n\n"
        "```py\nif a < b:\n    pass\n```\n<div onclick='x'>raw</div>\n"
    )
    out = render_markdown(md, image, heading_offset=1)
    assert "<h3>Title with <code>code</code></h3>" in out
    assert "<p>para <em>em</em> and <strong>strong</strong> and a_b_c second line</p>" in out
    assert '<th>a</th><th class="right">b</th>' in out and '<td class="right">&lt;x&gt;</td>' in out
    assert (
        "<ol><li>one</li><li>two</li></ol>" in out
        and "<blockquote><p>quoted</p></blockquote>" in out
    )
    assert "<hr>" in out and '<img src="data:ok.png" alt="alt">' in out and "[missing]" in out
    assert 'out <span class="url">(example.org)</span>' in out and '<a href="#claims">in</a>' in out
    assert "<pre><code>if a &lt; b:\n    pass</code></pre>" in out
    assert "&lt;div onclick=&#x27;x&#x27;&gt;raw&lt;/div&gt;" in out
    assert _parse(out).errors == [] and _parse(out).stack == []
    assert render_markdown("") == ""


def test_corrupt_files_are_reported_and_the_rest_renders(tmp_path, capsys):
    _sim(tmp_path / "sims", "gate1-leash", SIM_A[:1], ["kl_ratio.png"])
    bad = tmp_path / "sims" / "clip-leash"
    bad.mkdir()
    (bad / "result.json").write_text('{"sim": "clip-leash", "claims": [')
    (tmp_path / "v").mkdir()
    good = {"id": "3.4", "statement": "Weyl", "status": "holds", "instances": 3}
    (tmp_path / "v" / "verify.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text(
        json.dumps({"claims": [{"id": "c", "paper": "p", "observed": "o", "verdict": "maybe"}, 3]})
    )
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r" / "page.html")]) == 0
    cap = capsys.readouterr()
    warnings = [line for line in cap.err.splitlines() if "warning" in line]
    assert any("sims/clip-leash/result.json: corrupt JSON" in w for w in warnings)
    assert any("v/verify.jsonl: corrupt JSONL: 1 bad line(s) (2)" in w for w in warnings)
    assert any("verdict 'maybe'" in w for w in warnings) and any(
        "claim 1 is not" in w for w in warnings
    )
    assert cap.out.strip().splitlines()[-1] == str(tmp_path / "r" / "page.html")
    page = (tmp_path / "r" / "page.html").read_text()
    assert "4 problem(s) reading the outputs" in page and "corrupt JSON" in page
    rows = _parse(page).rows
    assert {(r[0], r[1], r[4]) for r in rows[1:]} == {
        ("S2 gate1-leash", "S2.ratio_to_one", "agrees"),
        ("verify", "3.4", "agrees"),
        ("study", "c", "inconclusive"),  # an unknown verdict is never shown as a verdict
    }


def test_figures_outside_the_folder_or_not_png_are_not_embedded(tmp_path):
    outside = tmp_path / "outside.png"
    _png(outside, 1)
    root = tmp_path / "res"
    _sim(root, "gate1-leash", SIM_A[:1], ["ok.png"])
    result = json.loads((root / "gate1-leash" / "result.json").read_text())
    (root / "gate1-leash" / "fake.png").write_text("not a png")
    result["figures"] += ["../../outside.png", "fake.png", "gone.png"]
    (root / "gate1-leash" / "result.json").write_text(json.dumps(result))
    rep = build_report(discover(root))
    assert len(_parse(rep.html).imgs) == 1
    assert sorted(p.split(": figure not embedded: ")[1] for p in rep.problems) == [
        "not a PNG",
        "not found",
        "outside the report folder",
    ]
    assert "Not found in this folder" in rep.html and "real-model study" in rep.html


def test_zero_claims_and_a_folder_with_nothing_known(tmp_path, capsys):
    # the control: a simulation without claims gives an empty top table, not a crash and no invented rows
    _sim(tmp_path / "a", "gate1-leash", [], [])
    rep = build_report(discover(tmp_path / "a"))
    assert rep.claims == [] and "No claims found." in rep.html
    # outputs straight in the root folder: the cards' ids still differ from the sections' ids
    (tmp_path / "a" / "verify.jsonl").write_text(
        json.dumps({"id": "3.4", "status": "holds"}) + "\n"
    )
    (tmp_path / "a" / "study.json").write_text(json.dumps({"claims": []}))
    ids = [v for _, k, v in _parse(build_report(discover(tmp_path / "a")).html).attrs if k == "id"]
    assert len(ids) == len(set(ids)) and {"verify", "study", "src-verify", "src-study"} <= set(ids)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("x")
    for d in (tmp_path / "b", tmp_path / "missing"):
        assert main(["report", str(d)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("threegate report: error:") and "\n" not in err
    assert not (tmp_path / "b" / "report.html").exists()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (Debian package chromium)"
)
def test_renders_in_headless_chromium(page, results, tmp_path):
    profile = tmp_path / "profile"
    shot, pdf = tmp_path / "shot.png", tmp_path / "page.pdf"
    flags = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        f"--user-data-dir={profile}",
    ]
    url = (results / "report.html").resolve().as_uri()
    ran = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    # page-level errors only (the sandbox's missing D-Bus is noise): console messages, failed loads
    assert not re.search(r"CONSOLE|net::ERR_|Failed to load resource|Uncaught", ran.stderr)
    img = mpimg.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05 and (gray < 0.3).mean() > 0.005  # text and colour, not a blank page
    printed = subprocess.run(
        [*flags, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url],
        capture_output=True,
        timeout=180,
    )
    assert printed.returncode == 0 and pdf.read_bytes().startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert pages >= 5  # sections start on new pages


def test_simulation_labels_and_summaries_come_from_the_registry_without_importing(
    tmp_path, monkeypatch
):
    import sims
    from threegate.cli.report import sim_catalog

    pkg = tmp_path / "fake_sims_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "leash.py").write_text(
        'SUMMARY = "one line on the leash"\nraise RuntimeError("imported")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        sims, "REGISTRY", {"first": "fake_sims_pkg.absent", "leash": "fake_sims_pkg.leash"}
    )
    catalog = sim_catalog()
    assert [(k, v.label, v.summary) for k, v in catalog.items()] == [
        ("first", "S1", ""),
        ("leash", "S2", "one line on the leash"),
    ]
    _sim(tmp_path / "res", "leash", SIM_B[:1], [])
    _sim(tmp_path / "res" / "again", "leash", SIM_B[1:], [])
    rep = build_report(discover(tmp_path / "res"), sim_catalog=catalog)
    assert [c.source for c in rep.claims] == ["S2 leash (again/leash)", "S2 leash (leash)"]
    assert "one line on the leash" in rep.html and "S1 first" in " ".join(rep.missing)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    "sim claims figures summary captions data seconds size id paper observed verdict status statement "
    "instances max_ratio violations rate slope expected corrected counter_example counter_examples_by_kind "
    "kind ratio instance tables source row benchmarks reported_avg per_tuned linear table2 all_layers "
    "chosen_layer layer base".split()
)
_loose = st.dictionaries(
    _keys, _json | st.lists(st.dictionaries(_keys | st.text(max_size=4), _json), max_size=3)
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(result=_loose, summary=_loose, study=_loose, line=_loose, errata=_loose)
def test_malformed_but_valid_json_never_breaks_the_page(
    tmp_path_factory, result, summary, study, line, errata
):
    """Any JSON value in any field: the page still builds, parses, and shows only allowed verdicts."""
    root = tmp_path_factory.mktemp("fuzz")
    files = {
        "s/result.json": {"sim": "x", **result},
        "c/summary.json": {"table1": [], **summary},
        "t/study.json": study,
        "v/verify.jsonl": {**line, "id": "1"},
        "v/errata.json": errata,
    }
    for rel, obj in files.items():
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(json.dumps(obj))
    rep = build_report(discover(root))
    p = _parse(rep.html)
    assert p.errors == [] and p.stack == []
    assert all(c.verdict in VERDICTS for c in rep.claims)


def test_a_rate_that_is_not_a_list(tmp_path):
    """Found by the `thorough` profile: a verify line whose "rate" is `true` (not a list of fits)."""
    (tmp_path / "verify.jsonl").write_text(json.dumps({"id": "1", "sim": [], "rate": True}) + "\n")
    rep = build_report(discover(tmp_path))
    assert _parse(rep.html).errors == []
    assert all(c.verdict in VERDICTS for c in rep.claims)


def test_unhashable_values_where_names_are_expected(tmp_path):
    """Found by the property test above: lists where a figure name or an expected slope should be."""
    _sim(tmp_path, "gate1-leash", SIM_A[:1], [])
    path = tmp_path / "gate1-leash" / "result.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "figures": [[]], "captions": {"a": 1}})
    )
    (tmp_path / "verify.jsonl").write_text(
        json.dumps({"id": "3.3", "status": "holds", "rate": [{"slope": 1.0, "expected": []}]})
        + "\n"
    )
    rep = build_report(discover(tmp_path))
    assert [c.id for c in rep.claims] == ["3.3", "S2.ratio_to_one"]
    assert rep.problems == ["gate1-leash/result.json: a figure entry has no path"]
    assert rep.claims[0].observed.endswith("fitted rate 1.00")
