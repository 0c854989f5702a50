#!/usr/bin/env python3
"""Independent reference implementation of the VOD upload signature.

signature = base64(HMAC-SHA1(SecretKey, original) + original), where original is a
URL query string. Written from Tencent's documentation, not from our Go code.
Run: python3 gen.py > vectors.json
"""
import base64, hashlib, hmac, json, urllib.parse

KEY = "kz7ThSecretKeyForTestVectorsOnly0"
SID = "AKIDtestVectorSecretId00000000000"

def sign(params, quote=urllib.parse.quote_plus):
    original = urllib.parse.urlencode(params, quote_via=quote)
    mac = hmac.new(KEY.encode(), original.encode(), hashlib.sha1).digest()
    return original, base64.b64encode(mac + original.encode()).decode()

cases = [
    ("minimal", [("secretId", SID), ("currentTimeStamp", 1700000000),
                 ("expireTime", 1700086400), ("random", 220625)]),
    ("full_policy", [("secretId", SID), ("currentTimeStamp", 1700000000),
                     ("expireTime", 1700003600), ("random", 4294967295),
                     ("procedure", "LongVideoPreset"), ("storageRegion", "ap-chongqing"),
                     ("classId", 12), ("sourceContext", "user=42&job=a b/ü"),
                     ("oneTimeValid", 1), ("vodSubAppId", 1500000001),
                     ("sessionContext", "ctx"), ("taskPriority", -3),
                     ("taskNotifyMode", "Finish")]),
    # Node's querystring.stringify encodes a space as %20, not '+'.
    ("percent20_spaces", [("sourceContext", "hello world"), ("secretId", SID),
                          ("random", 7), ("expireTime", 1700086400),
                          ("currentTimeStamp", 1700000000)]),
    ("too_long_lived", [("secretId", SID), ("currentTimeStamp", 1700000000),
                        ("expireTime", 1700000000 + 91 * 86400), ("random", 1)]),
]
out = {"secretId": SID, "secretKey": KEY, "vectors": []}
for name, params in cases:
    quote = urllib.parse.quote if name == "percent20_spaces" else urllib.parse.quote_plus
    original, sig = sign(params, quote)
    out["vectors"].append({"name": name, "original": original, "signature": sig})
print(json.dumps(out, indent=2))
