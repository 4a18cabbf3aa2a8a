"""The public names are a deliberate list; adding one is an API decision."""

import streamproc


def test_public_names_are_exactly_the_curated_list() -> None:
    assert sorted(streamproc.__all__) == [
        "App", "Codec", "ConfigurationError", "Context", "DecodeError", "InvalidJsonError",
        "InvalidMessageIdError", "InvalidUtf8Error", "JsonCodec", "NullKeyError", "NullValueError",
        "PayloadTooLargeError", "Processor", "Record", "SchemaMismatchError", "SessionMisuseError", "Settings",
        "StreamprocError", "TransientError", "UndeclaredTopicError",
    ]
    assert all(hasattr(streamproc, name) for name in streamproc.__all__)


def test_every_error_descends_from_the_root() -> None:
    errors = [getattr(streamproc, n) for n in streamproc.__all__ if n.endswith("Error")]
    assert all(issubclass(e, streamproc.StreamprocError) for e in errors)
    assert streamproc.TransientError.retriable and not streamproc.DecodeError.retriable
