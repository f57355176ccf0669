"""The model server reads a request's Ollama `options` into its sampling, or refuses them."""

import pytest
from pydantic import ValidationError

from runtime.model_server.engine import Sampling


def test_options_left_out_take_the_defaults_and_unknown_ones_are_ignored() -> None:
    assert Sampling.from_request(None, None) == Sampling()
    assert Sampling.from_request({"num_ctx": 4096, "repeat_penalty": 1.1}, None) == Sampling()


def test_honoured_options_are_read_and_stop_is_one_string_or_many() -> None:
    sampling = Sampling.from_request(
        {"num_predict": 40, "temperature": 0, "top_k": "7", "seed": 42, "stop": "\n"}, "json"
    )
    assert (sampling.num_predict, sampling.temperature, sampling.top_k) == (40, 0.0, 7)
    assert (sampling.seed, sampling.stop, sampling.json_mode) == (42, ("\n",), True)
    assert Sampling.from_request({"stop": ["a", "b"]}, None).stop == ("a", "b")
    assert Sampling.from_request({"stop": None, "seed": None}, None) == Sampling()


@pytest.mark.parametrize("options", [{"top_k": "many"}, {"temperature": None}, {"stop": 3}])
def test_an_option_of_the_wrong_type_is_a_value_error_the_server_answers_400(
    options: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        Sampling.from_request(options, None)
    assert issubclass(ValidationError, ValueError)  # what the server's route catches
