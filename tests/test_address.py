"""Address: validation, normalisation, parsing of header forms, special-use domains."""

from __future__ import annotations

import copy
import dataclasses
import unicodedata

import email_validator
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtprelay import Address, AddressError


class TestConstruction:
    def test_bare_address(self) -> None:
        address = Address("bob@example.org")
        assert address.addr_spec == "bob@example.org"
        assert address.display_name == ""
        assert address.local_part == "bob"
        assert address.domain == "example.org"
        assert str(address) == "bob@example.org"
        assert not address.requires_smtputf8

    def test_display_name_is_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            Address("bob@example.org", "Bob")  # type: ignore[misc]
        assert Address("bob@example.org", display_name="Bob").display_name == "Bob"

    def test_domain_is_lower_cased_local_part_is_not(self) -> None:
        address = Address("Bob.Smith@Example.ORG")
        assert address.addr_spec == "Bob.Smith@example.org"

    def test_display_name_whitespace_is_normalised(self) -> None:
        assert Address("b@example.org", display_name="  Bob   Smith ").display_name == "Bob Smith"
        assert Address("b@example.org", display_name="\tBob\t \tSmith").display_name == "Bob Smith"
        assert Address.parse("Bob\t<b@example.org>") == Address("b@example.org", display_name="Bob")
        assert Address.parse('"Smith,\tBob" <b@example.org>').display_name == "Smith, Bob"

    def test_frozen_and_slotted(self) -> None:
        address = Address("bob@example.org")
        with pytest.raises(dataclasses.FrozenInstanceError):
            address.addr_spec = "eve@example.org"  # type: ignore[misc]
        assert not hasattr(address, "__dict__")

    def test_value_equality_and_hash(self) -> None:
        assert Address("bob@EXAMPLE.org") == Address("bob@example.org")
        assert hash(Address("bob@EXAMPLE.org")) == hash(Address("bob@example.org"))
        assert Address("bob@example.org", display_name="Bob") != Address("bob@example.org")
        assert copy.deepcopy(Address("bob@example.org")) == Address("bob@example.org")

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "bob",
            "bob@",
            "@example.org",
            "bob@@example.org",
            "bob@example",
            "bob@exa mple.org",
            "bo b@example.org",
            "bob@-example.org",
            "bob@example..org",
            "bob..x@example.org",
            "Bob <bob@example.org>",
            "<bob@example.org>",
        ],
    )
    def test_invalid_addr_specs(self, text: str) -> None:
        if text == "bob@example":
            # "example" alone is a special-use name (RFC 2606) and so is accepted.
            assert Address(text).domain == "example"
            return
        with pytest.raises(AddressError):
            Address(text)

    @pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028"])
    def test_control_characters_in_address(self, char: str) -> None:
        with pytest.raises(AddressError, match="control character"):
            Address(f"bob{char}@example.org")
        with pytest.raises(AddressError, match="control character"):
            Address(f"bob@example.org{char}")

    @pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x0b", "\x7f", "\u2029"])
    def test_control_characters_in_display_name(self, char: str) -> None:
        with pytest.raises(AddressError, match="control character"):
            Address("bob@example.org", display_name=f"Bob{char}Bcc: eve@example.net")

    def test_display_name_with_encoded_word_is_refused(self) -> None:
        # The email package would decode it on output and change the name.
        with pytest.raises(AddressError, match="encoded word"):
            Address("bob@example.org", display_name="=?utf-8?q?Bob?=")

    def test_wrong_types(self) -> None:
        with pytest.raises(TypeError):
            Address(b"bob@example.org")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Address("bob@example.org", display_name=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Address.parse(None)  # type: ignore[arg-type]

    def test_error_carries_the_address(self) -> None:
        with pytest.raises(AddressError) as info:
            Address("not an address")
        assert info.value.address == "not an address"
        assert isinstance(info.value, ValueError)


class TestInternational:
    def test_idn_domain_is_kept_in_ascii_form_for_ascii_local_part(self) -> None:
        address = Address("bob@bücher.example")
        assert address.addr_spec == "bob@xn--bcher-kva.example"
        assert not address.requires_smtputf8

    def test_idn_domain_in_ascii_form_is_accepted(self) -> None:
        assert Address("bob@xn--bcher-kva.example").addr_spec == "bob@xn--bcher-kva.example"

    def test_non_ascii_local_part_requires_smtputf8(self) -> None:
        address = Address("jörg@bücher.example")
        assert address.requires_smtputf8
        assert address.local_part == "jörg"
        assert address.domain == "bücher.example"

    def test_non_ascii_local_part_is_nfc_normalised(self) -> None:
        assert Address("jo\u0308rg@example.org").local_part == "j\u00f6rg"

    def test_unicode_display_name(self) -> None:
        address = Address("j@example.org", display_name="Jörg Ünïcödé 日本")
        assert address.display_name == "Jörg Ünïcödé 日本"
        assert str(address) == "Jörg Ünïcödé 日本 <j@example.org>"

    def test_invalid_idn_is_refused(self) -> None:
        with pytest.raises(AddressError):
            Address("bob@xn--zz.example")


class TestSpecialUseDomains:
    @pytest.mark.parametrize(
        "domain",
        [
            "mail.test",
            "example",
            "mx.example",
            "invalid",
            "x.invalid",
            "localhost",
            "a.localhost",
            "printer.local",
            "abc.onion",
            "1.0.0.127.in-addr.arpa",
            "test",
            "EXAMPLE.TEST",
            "\uff4d\uff41\uff49\uff4c.\uff54\uff45\uff53\uff54",
        ],  # fullwidth "mail.test"
    )
    def test_accepted(self, domain: str) -> None:
        address = Address(f"user@{domain}")
        assert address.domain == unicodedata.normalize("NFKC", domain).lower()

    def test_bare_localhost(self) -> None:
        assert Address("root@localhost").addr_spec == "root@localhost"

    def test_special_use_idn_subdomain(self) -> None:
        assert Address("a@bücher.test").addr_spec == "a@xn--bcher-kva.test"

    def test_syntax_still_checked_under_special_use_name(self) -> None:
        for bad in ("user@-bad.test", "user@bad..test", "user@.test", "user@test.", "user@a_b.localhost"):
            with pytest.raises(AddressError):
                Address(bad)

    def test_length_limit_still_checked_under_special_use_name(self) -> None:
        label = "a" * 63
        long_domain = ".".join([label] * 4) + ".test"  # 4*64 + 4 = 260 > 253 octets
        with pytest.raises(AddressError):
            Address(f"u@{long_domain}")
        with pytest.raises(AddressError):
            Address(f"u@{'a' * 64}.test")  # label over 63 octets

    def test_other_dotless_domains_are_refused(self) -> None:
        with pytest.raises(AddressError):
            Address("user@intranet")

    def test_email_validator_globals_are_untouched(self) -> None:
        before = list(email_validator.SPECIAL_USE_DOMAIN_NAMES)
        flags = (
            email_validator.ALLOW_DOMAIN_LITERAL,
            email_validator.CHECK_DELIVERABILITY,
            email_validator.TEST_ENVIRONMENT,
        )
        Address("a@mail.test")
        Address("b@localhost")
        assert before == email_validator.SPECIAL_USE_DOMAIN_NAMES
        assert "test" in email_validator.SPECIAL_USE_DOMAIN_NAMES
        assert flags == (
            email_validator.ALLOW_DOMAIN_LITERAL,
            email_validator.CHECK_DELIVERABILITY,
            email_validator.TEST_ENVIRONMENT,
        )
        # And email-validator itself still refuses them for its other users.
        with pytest.raises(email_validator.EmailNotValidError):
            email_validator.validate_email("a@mail.test", check_deliverability=False)

    def test_changed_email_validator_defaults_do_not_change_what_we_accept(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(email_validator, "ALLOW_DOMAIN_LITERAL", True)
        monkeypatch.setattr(email_validator, "ALLOW_QUOTED_LOCAL", True)
        with pytest.raises(AddressError):
            Address("x@[192.0.2.1]")
        with pytest.raises(AddressError):
            Address('"x y"@example.org')


class TestRefusedForms:
    @pytest.mark.parametrize("text", ["x@[192.0.2.1]", "x@[IPv6:2001:db8::1]"])
    def test_domain_literals_are_refused(self, text: str) -> None:
        with pytest.raises(AddressError, match="bracketed"):
            Address(text)
        with pytest.raises(AddressError):
            Address.parse(f"X <{text}>")

    @pytest.mark.parametrize("text", ["=?utf-8?q?bob=40evil.example?=@example.org", "a=?x?b?y?=@example.org"])
    def test_local_part_that_looks_encoded_is_refused(self, text: str) -> None:
        with pytest.raises(AddressError, match="encoded word"):
            Address(text)

    def test_local_part_with_equals_and_question_marks_is_fine(self) -> None:
        assert Address("a=?b@example.org").local_part == "a=?b"

    def test_quoted_local_part_is_refused(self) -> None:
        with pytest.raises(AddressError, match=r"[Qq]uot"):
            Address('"john smith"@example.org')
        with pytest.raises(AddressError, match=r"[Qq]uot"):
            Address.parse('"john smith"@example.org')


class TestParse:
    @pytest.mark.parametrize(
        ("text", "name", "addr"),
        [
            ("bob@example.org", "", "bob@example.org"),
            ("  bob@example.org  ", "", "bob@example.org"),
            ("<bob@example.org>", "", "bob@example.org"),
            ("Bob <bob@example.org>", "Bob", "bob@example.org"),
            ("Bob<bob@example.org>", "Bob", "bob@example.org"),
            ("Bob  Q   Smith <bob@example.org>", "Bob Q Smith", "bob@example.org"),
            ('"Smith, Bob" <bob@example.org>', "Smith, Bob", "bob@example.org"),
            ('"Bob \\"the builder\\"" <bob@example.org>', 'Bob "the builder"', "bob@example.org"),
            ('"bob@example.org" <bob@example.org>', "bob@example.org", "bob@example.org"),
            ("Dr. Bob <bob@example.org>", "Dr. Bob", "bob@example.org"),
            ("Jörg <jörg@bücher.example>", "Jörg", "jörg@bücher.example"),
            ("=?utf-8?q?J=C3=B6rg?= <j@example.org>", "Jörg", "j@example.org"),
            ("=?iso-8859-1?q?J=F6rg?= Smith <j@example.org>", "Jörg Smith", "j@example.org"),
            ("Bob <bob@localhost>", "Bob", "bob@localhost"),
        ],
    )
    def test_accepted_forms(self, text: str, name: str, addr: str) -> None:
        assert Address.parse(text) == Address(addr, display_name=name)

    @pytest.mark.parametrize(
        "text",
        [
            # CVE-2023-27043: parsers disagree on which address these hold.
            "alice@example.org<bob@example.com>",
            "alice@example.org <bob@example.com>",
            "alice@example.org (x) <bob@example.com>",
            "alice@example.org)<bob@example.com>",
            '"a@b"@example.com',
            'a"@b"@example.com',
            "bob@example.org (Bob)",
            "Bob (comment) <bob@example.org>",
            "<@relay.example:bob@example.org>",
            "Bob <bob@example.org> trailing",
            "Bob <bob@example.org> <eve@example.net>",
            "Bob <bob@example.org",
            "Bob bob@example.org>",
            "bob@example.org eve@example.net",
            "bob@example.org, eve@example.net",
            "group: bob@example.org;",
            "Bob Smith",
            '"unterminated <bob@example.org>',
            "Bob \\ <bob@example.org>",
            "Bob <bob @example.org>",
            "Bob <bob@example.org,eve@example.net>",
            "Bob <>",
            "",
        ],
    )
    def test_refused_forms(self, text: str) -> None:
        with pytest.raises(AddressError):
            Address.parse(text)

    @pytest.mark.parametrize(
        "text",
        [
            "=?utf-8?q?Bob=0D=0ABcc=3A_eve=40example.net?= <bob@example.org>",
            "=?utf-8?b?Qm9iDQpCY2M6IGV2ZUBleGFtcGxlLm5ldA==?= <bob@example.org>",
            '"=?utf-8?q?Bob=0A?=" <bob@example.org>',
            "=?utf-8?q?Bob=00?= <bob@example.org>",
        ],
    )
    def test_encoded_control_character_in_display_name_is_refused(self, text: str) -> None:
        with pytest.raises(AddressError, match="control character"):
            Address.parse(text)

    def test_encoded_word_with_raw_specials_is_refused(self) -> None:
        # ':' and '@' are not allowed inside an encoded word in a phrase (RFC 2047 5(3)).
        with pytest.raises(AddressError):
            Address.parse("=?utf-8?q?Bob=0D=0ABcc:_eve@example.net?= <bob@example.org>")

    def test_str_round_trips_through_parse(self) -> None:
        for address in (
            Address("bob@example.org"),
            Address("bob@example.org", display_name="Bob"),
            Address("bob@example.org", display_name="Smith, Bob"),
            Address("bob@example.org", display_name='He said "hi" \\o/'),
            Address("bob@example.org", display_name="Dr. Bob"),
            Address("bob@example.org", display_name="bob@example.org"),
            Address("jörg@bücher.example", display_name="Jörg"),
        ):
            assert Address.parse(str(address)) == address

    def test_str_quotes_specials(self) -> None:
        assert str(Address("b@example.org", display_name="Smith, Bob")) == '"Smith, Bob" <b@example.org>'
        assert str(Address("b@example.org", display_name='a"b')) == '"a\\"b" <b@example.org>'


_display_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(name=_display_names)
def test_any_display_name_round_trips_or_is_refused(name: str) -> None:
    try:
        address = Address("bob@example.org", display_name=name)
    except AddressError:
        return
    assert "\r" not in address.display_name and "\n" not in address.display_name
    assert Address.parse(str(address)) == address


# --- the parse without the standard library's second opinion -------------------------------------

_atext = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(alphabet=st.sampled_from(_atext), min_size=1, max_size=12)
_phrase_atoms = st.text(
    alphabet=st.sampled_from(_atext) | st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
_dot_atoms = st.lists(_atoms, min_size=1, max_size=4).map(".".join)


@st.composite
def _simple_mailboxes(draw: st.DrawFn) -> str:
    addr = f"{draw(_dot_atoms)}@{draw(_dot_atoms)}"
    words = draw(st.lists(_phrase_atoms, max_size=4))
    return f"{' '.join(words)} <{addr}>" if words else addr


@given(
    text=_simple_mailboxes() | st.text(alphabet=st.sampled_from(_atext + ' .@<>"é\u00a0\u200b'), max_size=40)
)
def test_mailboxes_read_without_a_second_opinion_are_read_the_same_by_the_standard_library(text: str) -> None:
    """The claim behind skipping the second opinion: the standard library agrees, without a defect."""
    from smtprelay._address import _second_opinion, _split, is_simple_mailbox

    if not is_simple_mailbox(text):
        return
    found = [raw for _, raw in _split(text, allow_groups=False)]
    assert len(found) == 1
    _second_opinion(text, found)  # raises AddressError when the library disagrees


@pytest.mark.parametrize(
    ("text", "simple"),
    [
        ("bob@example.org", True),
        ("Bob Smith <bob@example.org>", True),
        ("Jörg Müller <joerg@example.org>", True),
        ("Dr. Bob <bob@example.org>", False),  # obsolete period: the library flags it
        ('"Bob" <bob@example.org>', False),
        ("=?utf-8?q?Bob?= <bob@example.org>", False),
        ("Bob\u00a0Smith <bob@example.org>", False),  # not printable: the library flags it
        ("jörg@example.org", False),
        ("bob@example.org, eve@example.org", False),
        ("Bob <bob@example.org", False),
        ("bob@example.org (Bob)", False),
    ],
)
def test_simple_mailbox_forms(text: str, simple: bool) -> None:
    from smtprelay._address import is_simple_mailbox

    assert is_simple_mailbox(text) is simple
