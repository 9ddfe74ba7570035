"""User strings shown on a terminal: escaped, one line, never markup."""

from m2l_cli.text import shown


def test_control_characters_line_breaks_and_undecodable_bytes_are_escaped():
    assert shown("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert shown("one\ntwo\rthree\x00") == "one\\x0atwo\\x0dthree\\x00"
    assert shown("caf\udce9") == "caf\\xe9"  # a byte that was not UTF-8 in a file name
    assert shown("\ud800 \u2028 \x9b") == "\\ud800 \\u2028 \\x9b"


def test_printable_text_markup_included_is_kept_as_it_is():
    text = "Sérénade [live] [/bold] Ω 日本 \\ tab-free"
    assert shown(text) == text
