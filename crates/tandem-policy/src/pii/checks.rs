//! Validation rules: checksums, number ranges and entropy. Pure functions on ASCII input.

/// Luhn (mod 10) check over ASCII digits.
pub(crate) fn luhn_ok(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the digits look like a payment card: known issuer prefix with a length that
/// issuer uses, and a valid Luhn check digit.
pub(crate) fn card_ok(digits: &[u8]) -> bool {
    let len = digits.len();
    if !(13..=19).contains(&len) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let prefix = |n: usize| -> u32 {
        digits[..n]
            .iter()
            .fold(0, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let issuer_ok = match digits[0] {
        // Visa
        b'4' => matches!(len, 13 | 16 | 19),
        // Mastercard
        b'5' => (51..=55).contains(&p2) && len == 16,
        b'2' => (2221..=2720).contains(&p4) && len == 16,
        // Amex, JCB
        b'3' => ((p2 == 34 || p2 == 37) && len == 15) || ((3528..=3589).contains(&p4) && len >= 16),
        // Discover, UnionPay
        b'6' => (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || p2 == 62) && len >= 16,
        _ => false,
    };
    issuer_ok && luhn_ok(digits)
}

/// IBAN length per country (ISO 13616 registry, the common ones).
pub(crate) fn iban_length(country: &[u8]) -> Option<usize> {
    let len = match country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    };
    Some(len)
}

/// ISO 7064 MOD 97-10 over a compact, upper-case IBAN: move the first four characters to
/// the end, letters become 10..=35, and the number mod 97 must be 1.
pub(crate) fn iban_mod97_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// The two-digit code of the leading letter of Taiwan ID / resident certificate numbers.
pub(crate) fn tw_letter_code(letter: u8) -> Option<u32> {
    const CODES: [u32; 26] = [
        10, 11, 12, 13, 14, 15, 16, 17, 34, 18, 19, 20, 21, 22, 35, 23, 24, 25, 26, 27, 28, 29, 32,
        30, 31, 33,
    ];
    let l = letter.to_ascii_uppercase();
    l.is_ascii_uppercase().then(|| CODES[usize::from(l - b'A')])
}

/// The shared Taiwan checksum: the letter code's two digits and the nine digits that follow,
/// weighted 1,9,8,7,6,5,4,3,2,1,1, must sum to a multiple of 10.
pub(crate) fn tw_checksum_ok(letter_code: u32, nine: &[u32; 9]) -> bool {
    const WEIGHTS: [u32; 9] = [8, 7, 6, 5, 4, 3, 2, 1, 1];
    let head = letter_code / 10 + (letter_code % 10) * 9;
    let sum: u32 = head + nine.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum::<u32>();
    sum.is_multiple_of(10)
}

fn ten_chars(s: &[u8]) -> Option<(u8, u8, [u32; 8])> {
    if s.len() != 10 {
        return None;
    }
    let mut rest = [0u32; 8];
    for (slot, &b) in rest.iter_mut().zip(&s[2..]) {
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = u32::from(b - b'0');
    }
    Some((s[0], s[1].to_ascii_uppercase(), rest))
}

fn nine(first: u32, rest: [u32; 8]) -> [u32; 9] {
    let mut n = [first; 9];
    n[1..].copy_from_slice(&rest);
    n
}

/// Taiwan national ID: letter, 1 or 2 (sex), seven digits, check digit.
pub(crate) fn tw_national_id_ok(s: &[u8]) -> bool {
    let Some((letter, second, rest)) = ten_chars(s) else {
        return false;
    };
    let Some(code) = tw_letter_code(letter) else {
        return false;
    };
    matches!(second, b'1' | b'2') && tw_checksum_ok(code, &nine(u32::from(second - b'0'), rest))
}

/// Taiwan resident certificate (ARC / UI number). New format (2021+): letter, 8 or 9, seven
/// digits, check digit, with the national-ID checksum. Old format: two letters (the second
/// A–D), eight digits; the second letter counts as the last digit of its letter code.
pub(crate) fn tw_resident_cert_ok(s: &[u8]) -> bool {
    let Some((letter, second, rest)) = ten_chars(s) else {
        return false;
    };
    let Some(code) = tw_letter_code(letter) else {
        return false;
    };
    let first = match second {
        b'8' | b'9' => u32::from(second - b'0'),
        b'A'..=b'D' => match tw_letter_code(second) {
            Some(c) => c % 10,
            None => return false,
        },
        _ => return false,
    };
    tw_checksum_ok(code, &nine(first, rest))
}

/// US SSN ranges: area not 000, 666 or 900–999; group not 00; serial not 0000.
pub(crate) fn ssn_ok(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Shannon entropy in bits per character.
pub(crate) fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::<char, usize>::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}
