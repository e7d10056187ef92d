"""The provider boundary's pure parts: text repair across deltas, implausible usage, unsendable request text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mofa_sdk.errors import ValidationError
from mofa_sdk.llm import ChatMessage, Usage
from mofa_sdk.llm._boundary import MAX_TOKEN_COUNT, TextRepair, check_request, implausible_usage

EMOJI = "\U0001f600"


def feed_all(deltas: list[str]) -> tuple[list[str], TextRepair]:
    repair = TextRepair()
    out = [repair.feed(d) for d in deltas]
    out.append(repair.finish())
    return out, repair


def test_a_pair_split_across_two_deltas_is_joined() -> None:
    out, repair = feed_all(["Hi ", "\ud83d", "\ude00", "!"])
    assert out == ["Hi ", "", EMOJI, "!", ""]
    assert (repair.joined, repair.replaced) == (1, 0)
    assert repair.notes() == ["joined 1 surrogate pair(s) split across deltas"]


def test_a_pair_split_inside_longer_deltas_is_joined() -> None:
    out, repair = feed_all(["a\ud83d", "\ude00b"])
    assert "".join(out) == f"a{EMOJI}b"
    assert out[0] == "a"  # only the high surrogate is held back
    assert repair.joined == 1


def test_lone_surrogates_become_the_replacement_character() -> None:
    out, repair = feed_all(["x\ude00y", "\ud83d", "z", "\ud800"])
    assert "".join(out) == "x\ufffdy\ufffdz\ufffd"
    assert (repair.joined, repair.replaced) == (0, 3)
    assert repair.notes() == ["replaced 3 lone surrogate(s) by U+FFFD"]


def test_clean_text_passes_untouched_and_unnoted() -> None:
    out, repair = feed_all(["plain ", "ünïcode ", EMOJI, ""])
    assert out == ["plain ", "ünïcode ", EMOJI, "", ""]
    assert repair.notes() == []


def test_two_high_surrogates_in_a_row_hold_back_only_one() -> None:
    out, repair = feed_all(["\ud83d", "\ud83d", "\ude00"])
    assert out == ["", "\ufffd", EMOJI, ""]
    assert (repair.joined, repair.replaced) == (1, 1)


_PIECES = st.sampled_from(["a", "é", EMOJI, "\ufffd", "\ud83d", "\ude00", "\udbff", "\udc00", "\ud800"])


@given(st.lists(st.text(alphabet=_PIECES, max_size=6), max_size=8))
def test_any_deltas_come_out_encodable_and_in_order(deltas: list[str]) -> None:
    out, _ = feed_all(deltas)
    joined = "".join(out)
    joined.encode("utf-8")  # never raises
    # repairing the whole text at once gives the same result as repairing it delta by delta
    whole = "".join(deltas).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    assert joined == whole


@pytest.mark.parametrize(
    ("usage", "named"),
    [
        (Usage(-5, 3, -2), "prompt_tokens=-5, total_tokens=-2"),
        (Usage(10, 2**31, 2**31 + 10), "completion_tokens=2147483648, total_tokens=2147483658"),
        (Usage(10, 5, 2**63), "total_tokens=9223372036854775808"),
    ],
)
def test_implausible_usage_is_named(usage: Usage, named: str) -> None:
    assert implausible_usage(usage) == named


def test_plausible_usage_passes() -> None:
    assert implausible_usage(Usage(0, 0, 0)) is None
    assert implausible_usage(Usage(MAX_TOKEN_COUNT, 0, MAX_TOKEN_COUNT)) is None


def test_request_text_utf8_cannot_encode_is_refused_naming_the_message() -> None:
    check_request([ChatMessage("system", "fine"), ChatMessage("user", f"fine {EMOJI}")])
    with pytest.raises(ValidationError, match=r"the system prompt \(request message 0\).*'\\udcff' at index 0"):
        check_request([ChatMessage("system", "\udcff"), ChatMessage("user", "hi")])
    with pytest.raises(ValidationError, match=r"the user message \(request message 1\)"):
        check_request([ChatMessage("system", ""), ChatMessage("user", "a\ud83d")])
