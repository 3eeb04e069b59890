"""Unit tests of `redact`: no gradebook password in a message or a log, in any URL form."""
from __future__ import annotations

import pytest

from llmcourse.grading.gradebook import redact

SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://grader:{SECRET}@db.example.org/course", "postgresql://grader:***@db.example.org/course"),
    (f"postgresql+psycopg://grader:{SECRET}@10.0.0.5:5432/course?sslmode=require",
     "postgresql+psycopg://grader:***@10.0.0.5:5432/course?sslmode=require"),
    (f"postgresql://grader:{SECRET}:with:colons@host/db", "postgresql://grader:***@host/db"),
    (f"postgresql://grader:{SECRET}@and@at@host/db", "postgresql://grader:***@host/db"),
    (f"postgresql://grader:{SECRET}/slash@host/db", "postgresql://grader:***@host/db"),
    (f"postgresql://grader:{SECRET}?q@host/db", "postgresql://grader:***@host/db"),
    (f"postgresql://grader:{SECRET}@host/db?application_name=me@lab",
     "postgresql://grader:***@host/db?application_name=me@lab"),
    (f"postgresql://:{SECRET}@host/db", "postgresql://:***@host/db"),
    (f"postgresql://host/db?user=grader&password={SECRET}", "postgresql://host/db?user=grader&password=***"),
    (f"postgresql://host/db?password={SECRET}&sslmode=require", "postgresql://host/db?password=***&sslmode=require"),
    (f"postgresql://grader@host/db?PASSWORD={SECRET}", "postgresql://grader@host/db?PASSWORD=***"),
])
def test_the_password_is_hidden_and_the_rest_kept(url, shown):
    assert redact(url) == shown
    assert SECRET not in redact(url)


@pytest.mark.parametrize("url", ["sqlite:////srv/course/gradebook.db", "postgresql://grader@host/db",
                                 "postgresql://host:5432/db?sslmode=require", "postgresql:///db"])
def test_a_url_without_a_password_is_unchanged(url):
    assert redact(url) == url
