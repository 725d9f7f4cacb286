"""`dllm serve` through a real client: the `openai` Python package (from PyPI). Completions,
chat completions, both streamed (with the usage chunk), a three-turn conversation, fresh and
fixed seeds, and the errors the package raises for the server's 4xx replies. Prints one JSON line of what it saw; exits non-zero on the first surprise.
Usage: python3 tests/openai_check.py BASE_URL MODEL API_KEY
"""
import json
import sys

import openai


def main():
    base, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
    seen = {}

    c = client.completions.create(model=model, prompt="In the", max_tokens=8, temperature=0)
    assert c.object == "text_completion" and c.choices[0].finish_reason in ("stop", "length")
    assert c.usage.completion_tokens >= 1, c
    seen["completion"] = c.choices[0].text

    chat = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Hi"}], max_tokens=6, n=2)
    assert chat.object == "chat.completion" and len(chat.choices) == 2
    assert chat.choices[0].message.role == "assistant"
    seen["chat"] = [ch.message.content for ch in chat.choices]

    parts = [p.choices[0].text for p in client.completions.create(
        model=model, prompt="In the", max_tokens=8, temperature=0, stream=True)]
    assert "".join(parts) == seen["completion"], (parts, seen["completion"])
    seen["completion_stream_chunks"] = len(parts)

    deltas = [p.choices[0].delta.content or "" for p in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True)]
    seen["chat_stream"] = "".join(deltas)

    # a three-turn conversation: each request carries the turns before it
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt_tokens = []
    for turn in range(3):
        r = client.chat.completions.create(model=model, messages=messages,
                                           max_completion_tokens=4, temperature=0)
        assert r.usage.completion_tokens <= 4, r.usage
        prompt_tokens.append(r.usage.prompt_tokens)
        messages += [{"role": "assistant", "content": r.choices[0].message.content},
                     {"role": "user", "content": "And then?"}]
    assert prompt_tokens[0] < prompt_tokens[1] < prompt_tokens[2], prompt_tokens
    seen["conversation_prompt_tokens"] = prompt_tokens

    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens and len(content[0].top_logprobs) == 2, r
    seen["chat_logprobs"] = len(content)

    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == [], chunks[-1]
    seen["stream_usage"] = chunks[-1].usage.completion_tokens

    def sample(**kw):
        return client.completions.create(model=model, prompt="In the", max_tokens=8,
                                         temperature=1, **kw).choices[0].text
    assert sample() != sample(), "two unseeded samples were the same"
    assert sample(seed=5) == sample(seed=5), "one seed gave two samples"
    seen["seeds"] = "fresh differ, fixed equal"

    for kwargs, error in [(dict(max_tokens=100000), openai.BadRequestError),
                          (dict(model="no-such-model"), openai.NotFoundError)]:
        args = dict(model=model, prompt="In the", max_tokens=4)
        args.update(kwargs)
        try:
            client.completions.create(**args)
            raise AssertionError(f"{kwargs} was accepted")
        except error as e:
            seen.setdefault("errors", []).append(e.status_code)
    try:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError as e:
        seen.setdefault("errors", []).append(e.status_code)
    seen["models"] = [m.id for m in client.models.list()]
    assert seen["models"] == [model]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
