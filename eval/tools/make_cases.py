"""Writes cases.jsonl: the function-calling set of `make eval-tools` (>= 100 cases; English
and Traditional Chinese; single calls, a choice among several functions, parallel calls,
and requests that need no call). Each line: {id, lang, kind, messages, tools, expected},
`tools` naming functions of TOOLS below, `expected` the calls (name + arguments) in order,
or [] when the right answer is text. Deterministic: re-running gives the same file."""
import json
import os

TOOLS = {
    "get_weather": {"description": "Current weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "description": "City name in English"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}},
    "get_time": {"description": "Current local time in an IANA time zone.", "parameters": {
        "type": "object", "properties": {"timezone": {"type": "string", "description": "IANA zone, e.g. Asia/Taipei"}},
        "required": ["timezone"]}},
    "convert_currency": {"description": "Convert an amount between currencies (ISO codes).", "parameters": {
        "type": "object", "properties": {"amount": {"type": "number"}, "from_currency": {"type": "string"},
        "to_currency": {"type": "string"}}, "required": ["amount", "from_currency", "to_currency"]}},
    "lookup_policy": {"description": "Look up an insurance policy by its number.", "parameters": {
        "type": "object", "properties": {"policy_number": {"type": "string"}}, "required": ["policy_number"]}},
    "file_claim": {"description": "File an insurance claim.", "parameters": {
        "type": "object", "properties": {"policy_number": {"type": "string"}, "amount_twd": {"type": "integer"}},
        "required": ["policy_number", "amount_twd"]}},
    "book_room": {"description": "Book a meeting room.", "parameters": {
        "type": "object", "properties": {"room": {"type": "string"}, "hour": {"type": "integer", "description": "Start hour, 0-23"},
        "minutes": {"type": "integer", "description": "Duration in minutes"}}, "required": ["room", "hour", "minutes"]}},
    "send_email": {"description": "Send an e-mail.", "parameters": {
        "type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}}, "required": ["to", "subject"]}},
}

CITIES = [("Taipei", "台北"), ("Tokyo", "東京"), ("Kaohsiung", "高雄"), ("Osaka", "大阪"), ("Seoul", "首爾"),
          ("Taichung", "台中"), ("Singapore", "新加坡"), ("London", "倫敦"), ("Tainan", "台南"), ("Paris", "巴黎")]
ZONES = [("Asia/Taipei", "Taipei", "台北"), ("Asia/Tokyo", "Tokyo", "東京"), ("Europe/London", "London", "倫敦"),
         ("America/New_York", "New York", "紐約"), ("Asia/Singapore", "Singapore", "新加坡")]
MONEY = [(100, "USD", "TWD"), (5000, "TWD", "JPY"), (250, "EUR", "USD"), (1200, "JPY", "TWD"), (80, "GBP", "EUR")]
POLICIES = ["P-2024-118", "P-2023-907", "AB-55120", "P-2025-003", "TW-778812"]
CLAIMS = [("P-2024-118", 52000), ("P-2023-907", 8800), ("AB-55120", 120000), ("TW-778812", 3500), ("P-2025-003", 61000)]
ROOMS = [("A301", 14, 30), ("B2", 9, 60), ("Orchid", 16, 45), ("C105", 10, 90), ("A302", 13, 30)]
MAILS = [("amy@example.com", "Quarterly report"), ("lee@example.org", "Claim update"), ("hr@example.com", "Leave request")]
NONE_EN = ["Say hello to the team in one sentence.", "What does the word 'policy' mean?", "Write a haiku about rain.",
           "Thank you for your help!", "Explain what an API is in one sentence.", "Give me a synonym for 'happy'.",
           "How do you spell 'necessary'?", "What is the capital of France?", "Tell me a short joke.",
           "Summarise: the meeting moved to Friday.", "What colour do you get mixing blue and yellow?",
           "Translate 'good morning' into French."]
NONE_ZH = ["請用一句話向團隊問好。", "「保單」這個詞是什麼意思？", "寫一首關於下雨的短詩。", "謝謝你的幫忙！",
           "用一句話解釋什麼是 API。", "「快樂」的同義詞是什麼？", "法國的首都是哪裡？", "講一個短笑話。",
           "摘要：會議改到星期五。", "藍色和黃色混合會變成什麼顏色？", "把「早安」翻譯成英文。", "台灣有幾個直轄市？"]


def user(text):
    return [{"role": "user", "content": text}]


def call(name, **args):
    return {"name": name, "arguments": args}


def cases():
    out = []
    add = lambda lang, kind, text, tools, expected: out.append(
        {"id": f"{kind}-{lang}-{len(out):03d}", "lang": lang, "kind": kind, "messages": user(text),
         "tools": tools, "expected": expected})
    # Single: one function offered, one call.
    for en, zh in CITIES[:6]:
        add("en", "single", f"What is the weather in {en} right now, in celsius?", ["get_weather"],
            [call("get_weather", city=en, unit="celsius")])
        add("zh", "single", f"{zh}現在天氣如何？請用攝氏（celsius），城市名用英文 {en}。", ["get_weather"],
            [call("get_weather", city=en, unit="celsius")])
    for zone, en, zh in ZONES[:3]:
        add("en", "single", f"What time is it in {en}? Use the zone {zone}.", ["get_time"], [call("get_time", timezone=zone)])
        add("zh", "single", f"{zh}現在幾點？時區用 {zone}。", ["get_time"], [call("get_time", timezone=zone)])
    for p in POLICIES[:4]:
        add("en", "single", f"Look up policy {p} for me.", ["lookup_policy"], [call("lookup_policy", policy_number=p)])
        add("zh", "single", f"幫我查保單 {p}。", ["lookup_policy"], [call("lookup_policy", policy_number=p)])
    # Choice: several functions offered, one is right.
    every = list(TOOLS)
    for amount, a, b in MONEY:
        add("en", "choice", f"Convert {amount} {a} to {b}.", every, [call("convert_currency", amount=amount, from_currency=a, to_currency=b)])
        add("zh", "choice", f"把 {amount} {a} 換算成 {b}。", every, [call("convert_currency", amount=amount, from_currency=a, to_currency=b)])
    for p, amt in CLAIMS:
        add("en", "choice", f"File a claim on policy {p} for {amt} TWD.", every, [call("file_claim", policy_number=p, amount_twd=amt)])
        add("zh", "choice", f"我要對保單 {p} 申請理賠，金額 {amt} 元新台幣。", every, [call("file_claim", policy_number=p, amount_twd=amt)])
    for room, hour, mins in ROOMS:
        add("en", "choice", f"Book room {room} at {hour}:00 for {mins} minutes.", every, [call("book_room", room=room, hour=hour, minutes=mins)])
        add("zh", "choice", f"預約會議室 {room}，{hour} 點開始，{mins} 分鐘。", every, [call("book_room", room=room, hour=hour, minutes=mins)])
    for to, subj in MAILS:
        add("en", "choice", f"Send an e-mail to {to} with the subject \"{subj}\".", every, [call("send_email", to=to, subject=subj)])
        add("zh", "choice", f"寄信給 {to}，主旨是「{subj}」。", every, [call("send_email", to=to, subject=subj)])
    for en, zh in CITIES[6:]:
        add("en", "choice", f"How is the weather in {en}? Answer in fahrenheit.", every, [call("get_weather", city=en, unit="fahrenheit")])
    # Parallel: two calls in one turn.
    pairs = [(CITIES[0], CITIES[1]), (CITIES[2], CITIES[3]), (CITIES[4], CITIES[5]), (CITIES[6], CITIES[7]), (CITIES[8], CITIES[9])]
    for (e1, z1), (e2, z2) in pairs:
        exp = [call("get_weather", city=e1, unit="celsius"), call("get_weather", city=e2, unit="celsius")]
        add("en", "parallel", f"What is the weather in {e1} and in {e2}, in celsius?", ["get_weather", "get_time"], exp)
        add("zh", "parallel", f"{z1}和{z2}的天氣如何？用攝氏，城市名用英文（{e1}、{e2}）。", ["get_weather", "get_time"], exp)
    for (z1, _, _), (z2, _, _) in [(ZONES[0], ZONES[1]), (ZONES[2], ZONES[3])]:
        add("en", "parallel", f"What time is it in {z1} and in {z2}?", ["get_time", "get_weather"],
            [call("get_time", timezone=z1), call("get_time", timezone=z2)])
    # No call needed.
    for t in NONE_EN:
        add("en", "none", t, every, [])
    for t in NONE_ZH:
        add("zh", "none", t, every, [])
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rows = cases()
    with open(os.path.join(here, "tools.json"), "w", encoding="utf-8") as f:
        json.dump(TOOLS, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(here, "cases.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(len(rows), "cases", kinds)


if __name__ == "__main__":
    main()
