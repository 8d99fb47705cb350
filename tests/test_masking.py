from __future__ import annotations

import pytest

from core.masking import (
    can_see_personal_data,
    mask_destination,
    mask_email,
    mask_name,
    mask_phone,
    mask_text,
    mask_value,
)


def test_it_masks_a_chinese_name_after_the_family_name():
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳小明") == "欧***"


def test_it_masks_each_word_of_a_latin_name():
    assert mask_name("Alice Smith") == "A**** S****"


def test_it_keeps_country_code_prefix_and_last_four_digits_of_a_phone():
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert mask_phone("+12025550123") == "+1202***0123"


def test_it_keeps_the_first_letter_and_domain_of_an_email():
    assert mask_email("alice@example.com") == "a***@example.com"


def test_it_masks_a_destination_as_what_it_is():
    assert mask_destination("alice@example.com") == "a***@example.com"
    assert mask_destination("+8613812345678") == "+86138****5678"
    assert "abcdefghijkl" not in mask_destination("abcdefghijkl")


def test_it_masks_known_values_and_lookalikes_inside_free_text():
    text = (
        "Dear Alice Smith, call +86 138 1234 5678 or 13912345678; 请致电13712345678联系 王小明; "
        "mail bob.x@foo.cn or alice@example.com. Due 2026-11-23, amount 1,234.56, loan L2026000123."
    )
    masked = mask_text(
        text, names=["Alice Smith", "王小明"], phones=["+8613812345678"], emails=["alice@example.com"]
    )
    for secret in (
        "Alice",
        "Smith",
        "王小明",
        "小明",
        "13812345678",
        "1234 5678",
        "13912345678",
        "13712345678",
        "bob.x@",
        "alice@",
    ):
        assert secret not in masked
    # What is not personal data survives: the date, the amount and the loan reference.
    assert "2026-11-23" in masked and "1,234.56" in masked and "L2026000123" in masked


def test_it_masks_personal_keys_and_their_values_elsewhere_in_a_json_value():
    value = {"name": "Alice Smith", "phone": "+8613812345678", "body": "Hi Alice, ring 13812345678", "n": 3}
    masked = mask_value(value)
    assert masked == {
        "name": "A**** S****",
        "phone": "+86138****5678",
        "body": "Hi A****, ring 138****5678",
        "n": 3,
    }


@pytest.mark.django_db
def test_only_the_personal_data_permission_unmasks():
    from django.contrib.auth.models import Permission

    from tests.factories import make_user

    user = make_user("operator")
    assert not can_see_personal_data(user)
    user.user_permissions.add(
        Permission.objects.get(codename="view_personal_data", content_type__app_label="loans")
    )
    user = type(user).objects.get(pk=user.pk)
    assert can_see_personal_data(user)


def test_message_text_without_a_known_name_is_withheld_from_a_json_value():
    masked = mask_value({"destination": "+8613812345678", "body": "张小明您好"})
    assert masked["body"] == "[withheld: 5 characters]"
    assert mask_value({"customer": {"name": "张小明"}, "sms": {"body": "张小明您好"}}) == {
        "customer": {"name": "张**"},
        "sms": {"body": "[withheld: 5 characters]"},
    }
