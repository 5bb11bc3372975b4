"""PDF documents generated from billing data: invoice, act, usage report, reconciliation act.

fpdf2 with the DejaVu Sans font shipped in storage/assets/fonts (it covers Cyrillic; licence beside it).
Texts come from config/texts/selfservice.yaml, so the same document exists in Russian and English.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from handlers.billing import format_money
from handlers.context import AppContext

FONT_DIR = Path(__file__).resolve().parents[2] / "storage" / "assets" / "fonts"
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"


@dataclass(frozen=True)
class StatementLine:
    on: date
    description: tuple[str, str]  # ("charge", document number) | ("payment", method)
    charge: Decimal | int
    payment: Decimal | int


@dataclass(frozen=True)
class DocumentData:
    kind: str
    number: str
    issued_on: date
    period_start: date
    period_end: date
    amount: Decimal | None
    account_number: str
    currency: str
    tariff: str | None
    client_name: str
    lines: tuple[StatementLine, ...] = ()
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _money(value: Any, currency: str, lang: str) -> str:
    return format_money(value, currency, lang)


def _day(value: date, lang: str) -> str:
    return value.strftime("%d.%m.%Y") if lang == "ru" else value.isoformat()


class _Pdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self._footer_text = footer_text
        self.add_font("DejaVu", "", str(FONT_REGULAR))
        self.add_font("DejaVu", "B", str(FONT_BOLD))
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(15, 15, 15)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font("DejaVu", "", 7)
        self.cell(0, 5, f"{self._footer_text} · {self.page_no()}/{{nb}}", align="C")


def render(ctx: AppContext, data: dict[str, Any], lang: str) -> bytes:
    """The PDF bytes of one document (data as produced by DocumentData.as_dict())."""
    t = ctx.t
    company = ctx.config.company
    kind = data["kind"]
    currency = data["currency"]
    pdf = _Pdf(footer_text=f"{company.name.get(lang)} · {company.phone}")
    pdf.set_title(f"{t('doc_kind_' + kind, lang)} {data['number']}")
    pdf.set_author(company.name.get(lang))
    pdf.set_creator("front office")
    pdf.add_page()

    pdf.set_font("DejaVu", "B", 12)
    pdf.multi_cell(0, 6, company.name.get(lang), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("DejaVu", "", 8)
    contacts = " · ".join(x for x in (company.phone, company.email, company.website) if x)
    pdf.multi_cell(0, 4, f"{company.legal_details.get(lang)}\n{contacts}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)

    pdf.set_font("DejaVu", "B", 15)
    heading = t("pdf_heading", lang, title=t("doc_kind_" + kind, lang), number=data["number"],
                date=_day(data["issued_on"], lang))
    pdf.multi_cell(0, 8, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_font("DejaVu", "", 10)
    facts = [
        (t("pdf_client", lang), data["client_name"]),
        (t("pdf_account", lang), data["account_number"]),
        (t("pdf_period", lang), f"{_day(data['period_start'], lang)} – {_day(data['period_end'], lang)}"),
    ]
    if data.get("tariff"):
        facts.append((t("pdf_tariff", lang), data["tariff"]))
    for label, value in facts:
        pdf.set_font("DejaVu", "B", 10)
        pdf.cell(40, 6, label)
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(0, 6, str(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    if kind in ("invoice", "act"):
        _service_table(pdf, t, data, lang, currency)
    else:
        _statement_table(pdf, t, data, lang, currency)

    pdf.ln(8)
    pdf.set_font("DejaVu", "", 9)
    note = {"invoice": "pdf_invoice_note", "act": "pdf_act_note", "usage_report": "pdf_usage_note",
            "reconciliation": "pdf_reconciliation_note"}[kind]
    pdf.multi_cell(0, 5, t(note, lang, payment_methods=company.payment_methods.get(lang)),
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _service_table(pdf: _Pdf, t: Any, data: dict[str, Any], lang: str, currency: str) -> None:
    amount = data.get("amount") or 0
    description = t("pdf_service_line", lang, tariff=data.get("tariff") or "—",
                    start=_day(data["period_start"], lang), end=_day(data["period_end"], lang))
    with pdf.table(col_widths=(10, 110, 20, 40), text_align=("CENTER", "LEFT", "CENTER", "RIGHT"),
                   line_height=6) as table:
        header = table.row()
        for label in ("№", t("pdf_col_service", lang), t("pdf_col_qty", lang), t("pdf_col_amount", lang)):
            header.cell(label)
        row = table.row()
        for value in ("1", description, "1", _money(amount, currency, lang)):
            row.cell(value)
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(0, 7, t("pdf_total", lang, amount=_money(amount, currency, lang)), align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(0, 5, t("pdf_no_vat", lang), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _statement_table(pdf: _Pdf, t: Any, data: dict[str, Any], lang: str, currency: str) -> None:
    if data.get("opening_balance") is not None:
        pdf.set_font("DejaVu", "B", 10)
        pdf.cell(0, 6, t("pdf_opening", lang, amount=_money(data["opening_balance"], currency, lang)),
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    pdf.set_font("DejaVu", "", 9)
    lines = data.get("lines") or ()
    total_charge = sum((Decimal(str(line["charge"])) for line in lines), Decimal(0))
    total_payment = sum((Decimal(str(line["payment"])) for line in lines), Decimal(0))
    with pdf.table(col_widths=(25, 85, 35, 35), text_align=("CENTER", "LEFT", "RIGHT", "RIGHT"),
                   line_height=5) as table:
        header = table.row()
        for label in (t("pdf_col_date", lang), t("pdf_col_operation", lang), t("pdf_col_charge", lang),
                      t("pdf_col_payment", lang)):
            header.cell(label)
        if not lines:
            row = table.row()
            row.cell(t("pdf_no_operations", lang), colspan=4)
        for line in lines:
            what, detail = line["description"]
            if what == "charge":
                text = t("pdf_op_charge", lang, number=detail)
            else:
                method = t("payment_method_" + detail, lang) if t.has("payment_method_" + detail) else detail
                text = t("pdf_op_payment", lang, method=method or "—")
            row = table.row()
            row.cell(_day(line["on"], lang))
            row.cell(text)
            row.cell(_money(line["charge"], currency, lang) if line["charge"] else "")
            row.cell(_money(line["payment"], currency, lang) if line["payment"] else "")
        total = table.row()
        total.cell(t("pdf_totals", lang), colspan=2)
        total.cell(_money(total_charge, currency, lang))
        total.cell(_money(total_payment, currency, lang))
    if data.get("closing_balance") is not None:
        pdf.ln(3)
        pdf.set_font("DejaVu", "B", 10)
        pdf.cell(0, 6, t("pdf_closing", lang, amount=_money(data["closing_balance"], currency, lang)),
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)
