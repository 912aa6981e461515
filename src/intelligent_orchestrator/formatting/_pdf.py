"""A report's Markdown laid out as a PDF with fpdf2's core fonts (no font files needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from markdown_it.tree import SyntaxTreeNode

from . import _text as tx

if TYPE_CHECKING:  # fpdf takes ~0.7 s to import: only a PDF export pays for it
    from fpdf import FPDF

_FONT = "Helvetica"
_MONO = "Courier"
_BODY_PT = 11
_LINE_MM = 5.5
_HEADING_PT = {1: 20, 2: 15, 3: 13}
_INDENT_MM = 6.0
_RASTER = {".png", ".jpg", ".jpeg", ".gif"}

# Core fonts encode Latin-1 only: common typographic characters get a Latin-1 spelling,
# anything else left becomes "?".
_LATIN1 = str.maketrans(
    {
        "→": "->",
        "←": "<-",
        "⇒": "=>",
        "↑": "^",
        "↓": "v",
        "\u2014": "-",
        "\u2013": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "…": "...",
        "•": "-",
        "€": "EUR",
        "™": "(TM)",
        "≤": "<=",
        "≥": ">=",
        "≠": "!=",
        "\u200b": "",
        "\ufeff": "",
    }
)


def latin1(text: str) -> str:
    """``text`` that a core PDF font can encode."""
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def render_pdf(markdown: str, *, title: str | None, workspace: Path) -> bytes:
    """The Markdown as a PDF; images are read only from inside ``workspace``."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_margins(18, 18, 18)
    pdf.set_creator("intelligent-orchestrator")
    if title:
        pdf.set_title(latin1(title))
    pdf.add_page()
    _Writer(pdf, workspace.resolve()).blocks(tx.parse(markdown))
    return bytes(pdf.output())


class _Writer:
    def __init__(self, pdf: FPDF, workspace: Path) -> None:
        self.pdf = pdf
        self.workspace = workspace

    def text(
        self, text: str, *, style: str = "", size: float = _BODY_PT, font: str = _FONT
    ) -> None:
        self.pdf.set_font(font, style, size)
        self.pdf.multi_cell(
            0, max(_LINE_MM, size * 0.45), latin1(text), align="L", new_x="LMARGIN", new_y="NEXT"
        )

    def blocks(self, node: SyntaxTreeNode, *, depth: int = 0) -> None:
        for child in node.children:
            match child.type:
                case "heading":
                    level = int(child.tag[1:])
                    self.pdf.ln(3)
                    self.text(_inline(child), style="B", size=_HEADING_PT.get(level, 12))
                    self.pdf.ln(1)
                case "paragraph":
                    self.paragraph(child)
                case "bullet_list" | "ordered_list":
                    self.list(child, depth=depth)
                case "fence" | "code_block":
                    self.text(child.content.rstrip("\n"), size=9, font=_MONO)
                    self.pdf.ln(2)
                case "blockquote":
                    with _Indented(self.pdf, _INDENT_MM):
                        self.blocks(child, depth=depth)
                case "table":
                    self.table(child)
                case "hr":
                    y = self.pdf.get_y() + 2
                    self.pdf.line(self.pdf.l_margin, y, self.pdf.w - self.pdf.r_margin, y)
                    self.pdf.ln(5)
                case _:
                    self.blocks(child, depth=depth)

    def paragraph(self, node: SyntaxTreeNode) -> None:
        inline = node.children[0] if node.children else None
        if inline is None:
            return
        images = [c for c in inline.children if c.type == "image"]
        others = [
            c
            for c in inline.children
            if c.type not in ("image", "softbreak", "hardbreak")
            and not (c.type == "text" and not c.content.strip())
        ]
        if images and not others:
            for image in images:
                self.image(str(image.attrs.get("src", "")))
            return
        self.text(tx.inline_text(inline).strip())
        self.pdf.ln(2)

    def list(self, node: SyntaxTreeNode, *, depth: int) -> None:
        start = node.attrs.get("start", 1)
        number = start if isinstance(start, int) else 1
        with _Indented(self.pdf, _INDENT_MM if depth else 0):
            for index, item in enumerate(node.children):
                marker = "-" if node.type == "bullet_list" else f"{number + index}."
                first = True
                for block in item.children:
                    if block.type == "paragraph" and block.children:
                        prefix = f"{marker} " if first else "   "
                        self.text(prefix + tx.inline_text(block.children[0]).strip())
                    elif block.type in ("bullet_list", "ordered_list"):
                        self.list(block, depth=depth + 1)
                    else:
                        self.blocks(block, depth=depth + 1)
                    first = False
        self.pdf.ln(2)

    def table(self, node: SyntaxTreeNode) -> None:
        rows = [
            [
                latin1(tx.squash(tx.inline_text(c.children[0]))) if c.children else ""
                for c in tr.children
            ]
            for tr in node.walk()
            if tr.type == "tr"
        ]
        if not rows:
            return
        columns = max(len(r) for r in rows)
        self.pdf.set_font(_FONT, "", 9 if columns <= 6 else 7)
        with self.pdf.table(
            text_align="LEFT", first_row_as_headings=True, line_height=4.5
        ) as table:
            for cells in rows:
                row = table.row()
                for cell in cells + [""] * (columns - len(cells)):
                    row.cell(cell)
        self.pdf.ln(3)

    def image(self, src: str) -> None:
        # fpdf2 draws only part of SVG; vector charts are listed by path.
        if Path(src).suffix.lower() not in _RASTER:
            self.text(f"Chart: {src}", style="I")
            return
        path = self.resolve(src)
        if path is None:
            self.text(f"[image not found in the workspace: {src}]", style="I")
            return
        from fpdf.errors import FPDFException

        try:
            width = min(self.pdf.epw, 160.0)
            self.pdf.image(str(path), w=width, x=self.pdf.l_margin)
        except (OSError, ValueError, FPDFException):
            self.text(f"[image could not be read: {src}]", style="I")
            return
        self.pdf.ln(3)

    def resolve(self, src: str) -> Path | None:
        if not src or "://" in src or src.startswith(("/", "data:")):
            return None
        path = (self.workspace / src).resolve()
        if not path.is_relative_to(self.workspace) or not path.is_file():
            return None
        return path


class _Indented:
    """Move the left margin in for the blocks written inside."""

    def __init__(self, pdf: FPDF, mm: float) -> None:
        self.pdf = pdf
        self.mm = mm

    def __enter__(self) -> None:
        self.pdf.set_left_margin(self.pdf.l_margin + self.mm)
        self.pdf.set_x(self.pdf.l_margin)

    def __exit__(self, *exc: object) -> None:
        self.pdf.set_left_margin(self.pdf.l_margin - self.mm)
        self.pdf.set_x(self.pdf.l_margin)


def _inline(node: SyntaxTreeNode) -> str:
    return tx.squash(tx.inline_text(node.children[0])) if node.children else ""
