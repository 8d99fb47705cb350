"""The import's XLSX sheet reader (``core.imports.sheets.FirstSheet``) gives the rows openpyxl's read-only mode
gives, value for value and type for type, and does not hold the rows it has read (issue 18, point 2)."""

from __future__ import annotations

import datetime as dt
import io
import tracemalloc
import zipfile

import openpyxl
import pytest
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont

from core.imports.files import FileReadError, _open_sheet, count_rows
from core.imports.sheets import FirstSheet


def openpyxl_rows(data: bytes) -> list[tuple]:
    """The rows as the import read them before: openpyxl's read-only mode to the sheet's real last row."""
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sheet = workbook.active
    sheet.reset_dimensions()
    rows = [tuple(values) for values in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows


def read_rows(data: bytes) -> list[tuple]:
    with FirstSheet(data) as sheet:
        rows = list(sheet)
        assert list(sheet) == rows  # each iteration reads from the start
    return rows


def typed(rows: list[tuple]) -> list[list[tuple[type, object]]]:
    return [[(type(value), value) for value in row] for row in rows]


def saved(workbook: openpyxl.Workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def every_kind_of_cell(sheet) -> None:
    sheet.append(["ref", "n", "when", "amount", "flag", "note"])
    sheet.append(["A-1", 7, dt.date(2026, 3, 15), 250.5, True, "  spaced  "])
    sheet.append(["B-2", -3, dt.datetime(2026, 3, 15, 9, 30, 15), 1e-7, False, "王小明"])
    sheet.append([None, 0, dt.time(9, 30), 12345678901234, None, ""])
    sheet.append(["C-3", 1.0, dt.timedelta(days=2, hours=3), -0.25, None, "=SUM(B2:B3)"])
    sheet.append([])  # an empty row
    sheet.append([*[None] * 27, "AB7"])  # a sparse row: one cell, in column AB
    sheet.append([None, 42, None, None, "x005F_kept"])
    sheet.append([CellRichText("rich ", TextBlock(InlineFont(b=True), "bold"))])
    sheet.append(["#N/A", None, dt.datetime(1899, 12, 31, 12, 0)])


def test_a_workbook_written_by_openpyxl_reads_as_openpyxl_reads_it():
    workbook = openpyxl.Workbook()
    every_kind_of_cell(workbook.active)
    workbook.active.cell(row=13, column=3, value="C13")  # after a gap of two rows
    data = saved(workbook)

    rows = read_rows(data)

    assert typed(rows) == typed(openpyxl_rows(data))
    assert rows[1] == ("A-1", 7, dt.datetime(2026, 3, 15), 250.5, True, "  spaced  ")
    assert rows[6][27] == "AB7" and len(rows[6]) == 28
    assert rows[5] == rows[10] == rows[11] == () and rows[12] == (None, None, "C13")


def test_a_workbook_written_row_by_row_reads_as_openpyxl_reads_it():
    workbook = openpyxl.Workbook(write_only=True)  # inline strings, no <dimension> before the rows
    every_kind_of_cell(workbook.create_sheet())
    data = saved(workbook)

    assert typed(read_rows(data)) == typed(openpyxl_rows(data))


CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/worksheets/sheet2.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/styles.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
<Override PartName="/xl/sharedStrings.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
</Types>"""

ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="xl/workbook.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""

WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"
 xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<workbookPr{date1904}/>
<bookViews><workbookView activeTab="{active}"/></bookViews>
<sheets><sheet name="Notes" sheetId="1" r:id="rId1"/><sheet name="Payments" sheetId="2" r:id="rId2"/></sheets>
</workbook>"""

WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="worksheets/sheet1.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>
<Relationship Id="rId2" Target="worksheets/sheet2.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>
<Relationship Id="rId3" Target="styles.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles"/>
<Relationship Id="rId4" Target="sharedStrings.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/>
</Relationships>"""

# Styles as Excel writes them: 1 a built-in date (14), 2 a custom date and time, 3 a duration, 4 a plain
# number with a decimal format, 5 a percentage.
STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ hh:mm"/>
<numFmt numFmtId="165" formatCode="[h]:mm:ss"/><numFmt numFmtId="166" formatCode="#,##0.00"/></numFmts>
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="1"><fill><patternFill patternType="none"/></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="6"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="10" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""

SHARED_STRINGS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="6" uniqueCount="6">
<si><t>ref</t></si><si><t>received_at</t></si><si><t xml:space="preserve"> BP-001 </t></si>
<si><r><rPr><b/></rPr><t>王</t></r><r><t>小明</t></r></si>
<si><t>tab_x005F_x0009_kept</t><rPh sb="0" eb="1"><t>ワン</t></rPh></si>
<si><t/></si>
</sst>"""

SHEET = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"
 xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac">
<dimension ref="A1:AB9"/>
<sheetViews><sheetView workbookViewId="0"/></sheetViews>
<sheetFormatPr defaultRowHeight="15" x14ac:dyDescent="0.25"/>
<cols><col min="1" max="1" width="12" customWidth="1"/></cols>
<sheetData>
<row r="1" spans="1:6" x14ac:dyDescent="0.25"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>
<c r="C1" t="inlineStr"><is><t>amount</t></is></c><c r="D1" t="str"><v>flag</v></c>
<c r="E1" t="inlineStr"><is><r><rPr><b/></rPr><t>no</t></r><r><t xml:space="preserve">te </t></r></is></c>
<c r="F1" t="inlineStr"><is><t/></is></c></row>
<row r="2" spans="1:6" ht="20" customHeight="1"><c r="A2" t="s"><v>2</v></c><c r="B2" s="2"><v>46096.375</v></c>
<c r="C2" s="4"><v>250.5</v></c><c r="D2" t="b"><v>1</v></c><c r="E2" t="s"><v>3</v></c>
<c r="F2" s="1"><v>46096</v></c></row>
<row r="3"><c r="A3" t="s"><v>4</v></c><c r="B3" s="3"><v>1.5</v></c><c r="C3" s="5"><v>0.125</v></c>
<c r="D3" t="b"><v>0</v></c><c r="E3" t="s"><v>5</v></c><c r="F3" t="e"><v>#DIV/0!</v></c></row>
<row r="5"><c r="A5"><f>1+1</f><v>2</v></c><c r="C5" t="str"><f>"a"&amp;"b"</f><v>ab</v></c>
<c r="D5"><v></v></c><c r="E5" t="d"><v>2026-03-15T09:30:00</v></c><c r="AB5"><v>1E3</v></c></row>
<row><c><v>1</v></c><c><v>2.50</v></c><c r="E6"><v>-7</v></c><c><v>8</v></c></row>
<row r="7"/>
<row r="8.0"><c r="B8" s="1"><v>0</v></c><c r="C8" t="inlineStr"/></row>
<row r="4"><c r="A4"><v>99</v></c></row>
<row r="9"><c r="C9"><v>3</v></c><c r="A9"><v>1</v></c></row>
</sheetData>
<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>
</worksheet>"""

OTHER_SHEET = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<dimension ref="A1"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>other</t></is></c></row></sheetData>
</worksheet>"""


def excel_shaped(active: int = 1, date1904: bool = False) -> bytes:
    """A workbook shaped like Excel's: ``<dimension>`` first, shared strings (plain, padded, rich, phonetic,
    escaped, empty), styles with built-in and custom date formats, cells without references, rows out of order."""
    parts = {
        "[Content_Types].xml": CONTENT_TYPES,
        "_rels/.rels": ROOT_RELS,
        "xl/workbook.xml": WORKBOOK.format(active=active, date1904=' date1904="1"' if date1904 else ""),
        "xl/_rels/workbook.xml.rels": WORKBOOK_RELS,
        "xl/styles.xml": STYLES,
        "xl/sharedStrings.xml": SHARED_STRINGS,
        "xl/worksheets/sheet1.xml": OTHER_SHEET,
        "xl/worksheets/sheet2.xml": SHEET,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text.encode("utf-8"))
    return out.getvalue()


@pytest.mark.parametrize("date1904", [False, True])
def test_a_workbook_shaped_like_excels_reads_as_openpyxl_reads_it(date1904):
    data = excel_shaped(date1904=date1904)

    rows = read_rows(data)

    assert typed(rows) == typed(openpyxl_rows(data))
    # The values the comparison covers, so that it compares something (the active sheet is the second).
    assert rows[0] == ("ref", "received_at", "amount", "flag", "note ", "")
    assert rows[1][0] == " BP-001 " and rows[1][3] is True and rows[1][4] == "王小明"
    assert rows[1][1] == (dt.datetime(2030, 3, 16, 9, 0) if date1904 else dt.datetime(2026, 3, 15, 9, 0))
    assert rows[2][1] == dt.timedelta(days=1, hours=12) and rows[2][0] == "tab_x0009_kept"
    assert rows[3] == () and all(99 not in row for row in rows)  # row 4, after row 8 in the file, is skipped
    assert rows[4][0] == 2 and rows[4][27] == 1000.0 and rows[4][3] is None
    assert rows[5] == (1, 2.5, None, None, -7, 8)
    assert rows[6] == ()
    assert rows[8] == (1,)  # a cell before the row's last is kept, one after is not


def test_the_sheet_read_is_the_one_the_workbook_shows():
    assert read_rows(excel_shaped(active=0)) == [("other",)] == openpyxl_rows(excel_shaped(active=0))


def test_a_file_that_is_not_a_workbook_is_refused_as_such():
    with pytest.raises(FileReadError, match="the file is not an XLSX workbook"):
        _open_sheet(b"ref,amount\n1,2\n")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(FileReadError, match="the file is not an XLSX workbook"):
        _open_sheet(zipped.getvalue())


def _peak_reading(rows: int) -> int:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(["ref", "loan_ref", "amount", "received_at"])
    for i in range(rows):
        sheet.append([f"BP{i:09d}", f"BL{i // 4:09d}", "250.00", "2026-03-01T09:00:00+00:00"])
    data = saved(workbook)
    tracemalloc.start()
    try:
        assert count_rows(data, "XLSX") == rows
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_sheet_does_not_hold_the_rows_already_read():
    # openpyxl's read-only mode held about 80 bytes a row read, and parsed the whole sheet on opening a workbook
    # written without a <dimension> first: 20,000 rows more would have cost megabytes.
    small, large = _peak_reading(1_000), _peak_reading(21_000)
    assert large - small < 200_000
