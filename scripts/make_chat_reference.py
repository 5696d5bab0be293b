#!/usr/bin/env python3
"""Golden chat-template references for arcane/tests/chat.rs and arcane-cli/tests/chat.rs.

For each template family below this script writes a fixture tokenizer folder
`arcane/tests/fixtures/chat/<family>/` (the Llama fixture's `tokenizer.json` with the family's
special tokens added, a `tokenizer_config.json`, and the template in the location the family
uses: `tokenizer_config.json`'s `chat_template` string or named list, `chat_template.jinja` or
`chat_template.json`), renders a few conversations with transformers' own
`apply_chat_template` (tokenize=False and tokenize=True, add_generation_prompt true and false),
and commits the strings and ids to `arcane/tests/fixtures/chat/reference.json`.

The templates are written for these tests to follow the published *format* of each family
(ChatML/Qwen2.5, Llama 3.1, Mistral [INST], Gemma, Phi-3, Zephyr); they are not copies of the
models' files (no network here). `strftime_now` is pinned to 2026-03-05 14:07:09 by replacing
the `datetime` that transformers' template environment calls.

It also writes the greedy continuation of the Llama fixture model (`fixtures/llama`) on the
Zephyr-rendered prompt of one conversation, for the CLI test of `arcane-cli chat`.

    /work/venv/bin/python scripts/make_chat_reference.py
"""

import datetime as _dt
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "arcane" / "tests" / "fixtures"
CHAT = FIXTURES / "chat"
FIXED_NOW = _dt.datetime(2026, 3, 5, 14, 7, 9)

# ---------------------------------------------------------------- templates (written for Arcane)

CHATML_QWEN = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if message['role'] not in ['user', 'assistant'] -%}
        {{ raise_exception("Only user and assistant roles are supported after an optional system message, got " + message['role']) }}
    {%- endif -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim -}}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

PHI3 = """{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"""

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

ZEPHYR_TOOL_USE = """{{ '<|tools|>\\n' + (tools | tojson) + eos_token + '\\n' }}""" + ZEPHYR

# Python-isms that chat templates on the Hub use: namespace, loop controls, string methods,
# tojson with its keyword arguments, dict methods, slices and filters.
PYFEATURES = """{%- set ns = namespace(turns=0, last_user='') -%}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- '## ' + message.content.strip().upper() + '\\n' -}}
        {%- continue -%}
    {%- endif -%}
    {%- if message.content.startswith('STOP') -%}
        {%- break -%}
    {%- endif -%}
    {%- set ns.turns = ns.turns + 1 -%}
    {%- if message.role == 'user' -%}{%- set ns.last_user = message.content.strip() -%}{%- endif -%}
    {{- '[' ~ loop.index ~ '/' ~ loop.length ~ '] ' + message.role.title() + ': ' + message.content.strip().replace('  ', ' ') + '\\n' -}}
    {%- if message.meta is defined -%}
        {{- 'meta=' + message.meta | tojson + '\\n' -}}
        {{- 'sorted=' + message.meta | tojson(sort_keys=True) + '\\n' -}}
        {{- 'ascii=' + message.meta | tojson(ensure_ascii=True) + '\\n' -}}
        {{- 'indented=' + message.meta | tojson(indent=2) + '\\n' -}}
        {%- for key, value in message.meta.items() -%}
            {{- key + ':' + (value is mapping) | string | lower + (', ' if not loop.last else '\\n') -}}
        {%- endfor -%}
    {%- endif -%}
{%- endfor -%}
{{- 'turns=' ~ ns.turns ~ ' words=' ~ (ns.last_user.split() | length) ~ ' first=' ~ ns.last_user.split(' ')[0] ~ ' ends?=' -}}{{ ns.last_user.endswith('?') }}{{ ' pad=' }}{{ pad_token is defined }}{{ ' none=' }}{{ none }}{{ '\\n' -}}
{{- 'reversed=' + (messages[::-1] | map(attribute='role') | join(',')) + '\n' -}}
{{- 'users=' ~ (messages | selectattr('role', 'equalto', 'user') | list | length) + '\n' -}}
{%- for message in messages -%}
    {%- if not loop.first and loop.previtem.role == message.role -%}{{- 'repeat!' -}}{%- endif -%}
    {{- message.get('name', 'anon') + ('' if message.content is string else '?') + ' ' -}}
{%- endfor -%}
{{- '\n' + (True | string) + '/' + (none | string) + '/' + ('%s-%d' | format('a', 3)) + '\n' -}}
{{- 'x,y,,z'.split(',') | tojson + ' ' + '  pad  '.lstrip() + '|' + 'abc'.endswith('bc') | string + '\n' -}}
{%- if add_generation_prompt -%}{{- '>>> ' + bos_token -}}{%- endif -%}
"""

# ---------------------------------------------------------------- families

# name -> (template location, template, added special tokens, config tokens, post-processor BOS)
FAMILIES = {
    "chatml": dict(where="config", template=CHATML_QWEN,
                   added=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                   tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None},
                   bos=None),
    "llama3": dict(where="jinja", template=LLAMA3,
                   added=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                          "<|end_header_id|>", "<|eot_id|>"],
                   tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                   bos="<|begin_of_text|>"),
    "mistral": dict(where="json", template=MISTRAL, added=[],
                    tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                    bos="<s>"),
    # Special tokens as AddedToken objects, as older tokenizer_config.json files store them.
    "gemma": dict(where="config", template=GEMMA,
                  added=["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
                  tokens={"bos_token": {"__type": "AddedToken", "content": "<bos>", "lstrip": False,
                                        "normalized": False, "rstrip": False, "single_word": False},
                          "eos_token": {"__type": "AddedToken", "content": "<eos>", "lstrip": False,
                                        "normalized": False, "rstrip": False, "single_word": False},
                          "pad_token": "<pad>"},
                  bos="<bos>"),
    "phi3": dict(where="config", template=PHI3,
                 added=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
                 tokens={"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>"},
                 bos=None),
    # Zephyr's markers are plain text: the Llama fixture's 512 ids, so the fixture model can chat.
    "zephyr": dict(where="named", template=ZEPHYR, tool_use=ZEPHYR_TOOL_USE, added=[],
                   tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                   bos="<s>"),
    # Arcane's default ChatML template (arcane/src/chat/chatml.jinja), rendered by transformers
    # with the ChatML fixture tokens; the folder holds no template (Arcane supplies it).
    "arcane_chatml": dict(where="arcane",
                          template=(ROOT / "arcane" / "src" / "chat" / "chatml.jinja").read_text(),
                          added=["<|im_start|>", "<|im_end|>"],
                          tokens={"eos_token": "<|im_end|>"}, bos=None),
    "pyfeatures": dict(where="jinja", template=PYFEATURES, added=[],
                       tokens={"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"},
                       bos="<s>"),
}

HELLO = [{"role": "user", "content": "Hello!"}]
MULTI = [
    {"role": "system", "content": "You are terse.  "},
    {"role": "user", "content": "Call me Ishmael."},
    {"role": "assistant", "content": "  Aye, Ishmael."},
    {"role": "user", "content": "Grüße 😀 — \"quotes\" <tag> & more?"},
]
NO_SYSTEM = [
    {"role": "user", "content": "The whale"},
    {"role": "assistant", "content": "is white"},
    {"role": "user", "content": "and large?"},
]
BAD_ALTERNATION = [
    {"role": "user", "content": "one"},
    {"role": "user", "content": "two"},
]
TOOL_ROLE = [
    {"role": "user", "content": "hi"},
    {"role": "tool", "content": "{}"},
]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city — today (°C)",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TOOL_CALLS = [
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather",
                                          "arguments": {"city": "Zürich", "days": [1, 2]}}}]},
    {"role": "tool", "content": "{\"temp\": 3}"},
    {"role": "tool", "content": "{\"wind\": \"calm\"}"},
]
PYCASE = [
    {"role": "system", "content": "  be brief "},
    {"role": "user", "content": "  how  are you?  ",
     "meta": {"zeta": 1, "one": 1.0, "alpha": {"x": [1, 2.5, None, True], "ü": "naïve 😀"}, "mid": "a\"b"}},
    {"role": "assistant", "content": "fine"},
    {"role": "user", "content": "what is the time?"},
    {"role": "assistant", "content": "STOP here"},
    {"role": "user", "content": "never shown"},
]

CONTINUE = NO_SYSTEM + [{"role": "assistant", "content": "It is white, "}]

CASES = {
    "chatml": [("hello", HELLO, {}), ("multi", MULTI, {}), ("no_system", NO_SYSTEM, {}),
               ("continue", CONTINUE, {"continue_final_message": True}),
               ("tools", TOOL_CALLS, {"tools": [WEATHER_TOOL]})],
    "llama3": [("hello_fixed_date", HELLO, {"date_string": "26 Jul 2024"}),
               ("multi_strftime", MULTI, {}), ("no_system", NO_SYSTEM, {}),
               ("continue", CONTINUE, {"continue_final_message": True,
                                       "date_string": "26 Jul 2024"})],
    "mistral": [("hello", HELLO, {}), ("multi", MULTI, {}), ("no_system", NO_SYSTEM, {}),
                ("bad_alternation", BAD_ALTERNATION, {})],
    "gemma": [("hello", HELLO, {}), ("multi", MULTI, {}), ("tool_role", TOOL_ROLE, {})],
    "phi3": [("hello", HELLO, {}), ("multi", MULTI, {}), ("no_system", NO_SYSTEM, {})],
    "zephyr": [("hello", HELLO, {}), ("multi", MULTI, {}), ("no_system", NO_SYSTEM, {}),
               ("tool_use", HELLO, {"tools": [WEATHER_TOOL], "chat_template": "tool_use"})],
    "pyfeatures": [("features", PYCASE, {})],
    "arcane_chatml": [("hello", HELLO, {}), ("multi", MULTI, {})],
}

# The conversation the CLI test answers with the Llama fixture model through Zephyr's template.
CLI_CONVERSATION = [{"role": "user", "content": "Call me Ishmael."}]
CLI_SECOND_TURN = "The whale?"
CLI_MAX_NEW_TOKENS = 6


def write_family(name, spec, base_json):
    from tokenizers import Tokenizer, processors

    folder = CHAT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tok = Tokenizer.from_str(base_json)
    if spec["added"]:
        tok.add_special_tokens(spec["added"])
    if spec["bos"] is None:
        tok.post_processor = None
    else:
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B",
            special_tokens=[(spec["bos"], bos_id)])
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    config.update(spec["tokens"])
    if spec["where"] == "config":
        config["chat_template"] = spec["template"]
    elif spec["where"] == "named":
        config["chat_template"] = [{"name": "default", "template": spec["template"]},
                                   {"name": "tool_use", "template": spec["tool_use"]}]
    elif spec["where"] == "jinja":
        (folder / "chat_template.jinja").write_text(spec["template"])
    elif spec["where"] == "json":
        with open(folder / "chat_template.json", "w") as f:
            json.dump({"chat_template": spec["template"]}, f, indent=2)
    with open(folder / "tokenizer_config.json", "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    return folder


def pin_clock():
    import transformers.utils.chat_template_utils as ctu

    class FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    ctu.datetime = FixedDatetime
    ctu._cached_compile_jinja_template.cache_clear() if hasattr(
        ctu._cached_compile_jinja_template, "cache_clear") else None


def spec_of(name):
    return FAMILIES[name]


def render_cases(name, folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    out = {"special_tokens": tok.special_tokens_map,
           "encode": {text: tok(text)["input_ids"] for text in ["Hello world", "Call me Ishmael."]},
           "cases": []}
    for case, messages, kwargs in CASES[name]:
        for agp in (False, True):
            if agp and kwargs.get("continue_final_message"):
                continue  # transformers refuses both at once
            # JSON text, so that a reader keeps the keys in their order.
            entry = {"name": case, "add_generation_prompt": agp,
                     "messages_json": json.dumps(messages, ensure_ascii=False),
                     "kwargs_json": json.dumps({k: v for k, v in kwargs.items()
                                                if k != "chat_template"}, ensure_ascii=False)}
            if isinstance(kwargs.get("chat_template"), str) and "{" not in kwargs["chat_template"]:
                entry["template_name"] = kwargs["chat_template"]
            if spec_of(name)["where"] in ("json", "arcane"):
                # transformers' tokenizers do not read chat_template.json (processors do; TGI
                # reads it for tokenizers too): pass the same template explicitly.
                kwargs = dict(kwargs, chat_template=spec_of(name)["template"])
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp,
                                               **kwargs)
                ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=agp,
                                              return_dict=False, **kwargs)
                entry.update(text=text, ids=list(ids))
            except Exception as e:  # raise_exception in the template
                entry["error"] = str(e)
            out["cases"].append(entry)
    return out


def cli_reference():
    """Greedy reply ids of the Llama fixture model through the Zephyr template: one turn, then a
    second user turn appended to the conversation with the first reply."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(CHAT / "zephyr"))
    model = AutoModelForCausalLM.from_pretrained(str(FIXTURES / "llama"), dtype=torch.float32)
    model.eval()

    def reply(messages):
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                      return_dict=False)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=CLI_MAX_NEW_TOKENS,
                                 do_sample=False, eos_token_id=2, pad_token_id=0)
        new = out[0, len(ids):].tolist()
        return ids, new

    first_prompt, first = reply(CLI_CONVERSATION)
    text = tok.decode([i for i in first if i != 2])
    second_conv = CLI_CONVERSATION + [{"role": "assistant", "content": text},
                                      {"role": "user", "content": CLI_SECOND_TURN}]
    second_prompt, second = reply(second_conv)
    return {"messages": CLI_CONVERSATION, "max_new_tokens": CLI_MAX_NEW_TOKENS,
            "prompt_ids": first_prompt, "reply_ids": first, "reply_text": text,
            "second_user": CLI_SECOND_TURN, "second_messages": second_conv,
            "second_prompt_ids": second_prompt, "second_reply_ids": second}


def main():
    import transformers

    pin_clock()
    base_json = (FIXTURES / "llama" / "tokenizer.json").read_text()
    reference = {"transformers": transformers.__version__,
                 "fixed_now": FIXED_NOW.isoformat(), "families": {}}
    for name, spec in FAMILIES.items():
        folder = write_family(name, spec, base_json)
        reference["families"][name] = render_cases(name, folder)
    reference["cli"] = cli_reference()
    with open(CHAT / "reference.json", "w") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
    print(f"wrote {CHAT / 'reference.json'}")


if __name__ == "__main__":
    main()
