//! The error-code lists of the other languages are generated from the one
//! list, sync-core's `ErrorCode`: this test renders each file and compares
//! it with the checked-in one. After adding a code, rewrite them with
//!
//! ```sh
//! LOGSYNC_BLESS=1 cargo test -p sync-core --test generated
//! ```
//!
//! and commit the result.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::PathBuf;

use sync_core::ErrorCode;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sync-core sits in the repository root")
        .to_path_buf()
}

const HEADER: &str = "GENERATED from sync-core's ErrorCode (sync-core/src/error.rs) by \
sync-core/tests/generated.rs: do not edit. After adding a code there, run \
`LOGSYNC_BLESS=1 cargo test -p sync-core --test generated`.";

fn codes() -> Vec<(String, &'static str, String)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (format!("{c:?}"), c.as_str(), c.description()))
        .collect()
}

/// `js/src/error-codes.js`: the JS list.
fn js_list() -> String {
    let mut s = String::new();
    writeln!(s, "// {HEADER}").unwrap();
    s.push('\n');
    s.push_str("/** Every error code, in the order sync-core lists them (equal to the wasm module's `errorCodes()`). */\n");
    s.push_str("export const ERROR_CODES = Object.freeze([\n");
    for (_, code, _) in codes() {
        writeln!(s, "  '{code}',").unwrap();
    }
    s.push_str("]);\n");
    s
}

fn ts_union(indent: &str) -> String {
    let mut s = String::new();
    s.push_str("export type ErrorCode =\n");
    let all = codes();
    for (i, (_, code, doc)) in all.iter().enumerate() {
        let end = if i + 1 == all.len() { ";" } else { "" };
        writeln!(s, "{indent}/** {doc} */").unwrap();
        writeln!(s, "{indent}| '{code}'{end}").unwrap();
    }
    s
}

/// `js/src/error-codes.d.ts`: the TypeScript union and the list's type.
fn js_types() -> String {
    let mut s = String::new();
    writeln!(s, "// {HEADER}").unwrap();
    s.push('\n');
    s.push_str(
        "/** Every stable error code Logsync uses, in Rust, on the wire, over HTTP and in JS. */\n",
    );
    s.push_str(&ts_union("  "));
    s.push('\n');
    s.push_str(
        "/** Every code, in a fixed order (equal to the wasm module's `errorCodes()`). */\n",
    );
    s.push_str("export declare const ERROR_CODES: readonly ErrorCode[];\n");
    s
}

/// `sync-wasm/src/error_codes.d.ts`: the union in the wasm module's
/// TypeScript declarations.
fn wasm_types() -> String {
    let mut s = String::new();
    writeln!(s, "// {HEADER}").unwrap();
    s.push_str("/** Every stable error code (see `errorCodes()`). */\n");
    s.push_str(&ts_union("  "));
    s
}

/// `examples/todo-elm/src/Logsync/ErrorCode.elm`: the codes as an Elm
/// custom type with its decoder.
fn elm_module() -> String {
    let all = codes();
    let unknown = format!("{:?}", ErrorCode::Unknown);
    // Rust doc links ([`ErrorCode::Unknown`]) become plain code spans.
    let elm_doc = |text: &str| text.replace("[`ErrorCode::", "`").replace("`]", "`");
    let mut lines: Vec<String> = Vec::new();
    let mut out = |s: &str| lines.push(s.to_string());
    out("module Logsync.ErrorCode exposing (ErrorCode(..), all, decoder, fromString, toString)");
    out("");
    out("{-| GENERATED from sync-core's `ErrorCode` (sync-core/src/error.rs) by");
    out("sync-core/tests/generated.rs: do not edit. After a code is added there, run");
    out("`LOGSYNC_BLESS=1 cargo test -p sync-core --test generated`.");
    out("");
    out("Every stable error code Logsync uses, in Rust, on the wire, over HTTP and");
    out("in JavaScript, as an Elm custom type. Text this build does not know (a");
    out(&format!(
        "newer peer's code) decodes to `{unknown}`, as it does in sync-core."
    ));
    out("");
    out("@docs ErrorCode, all, decoder, fromString, toString");
    out("");
    out("-}");
    out("");
    out("import Json.Decode as D");
    out("");
    out("");
    out("{-| One error code.");
    out("");
    for (variant, code, doc) in &all {
        out(&format!("  - `{variant}` (`{code}`): {}", elm_doc(doc)));
    }
    out("");
    out("-}");
    out("type ErrorCode");
    for (i, (variant, _, _)) in all.iter().enumerate() {
        out(&format!("    {} {variant}", if i == 0 { "=" } else { "|" }));
    }
    out("");
    out("");
    out("{-| Every code, in sync-core's order.");
    out("-}");
    out("all : List ErrorCode");
    out("all =");
    for (i, (variant, _, _)) in all.iter().enumerate() {
        out(&format!("    {} {variant}", if i == 0 { "[" } else { "," }));
    }
    out("    ]");
    out("");
    out("");
    out("{-| The code's stable text, e.g. `\"PAYLOAD_TOO_LARGE\"`.");
    out("-}");
    out("toString : ErrorCode -> String");
    out("toString code =");
    out("    case code of");
    for (i, (variant, code, _)) in all.iter().enumerate() {
        if i > 0 {
            out("");
        }
        out(&format!("        {variant} ->"));
        out(&format!("            \"{code}\""));
    }
    out("");
    out("");
    out("{-| The code with this text, or `Nothing` for text this build does not know.");
    out("-}");
    out("fromString : String -> Maybe ErrorCode");
    out("fromString text =");
    out("    case text of");
    for (variant, code, _) in &all {
        out(&format!("        \"{code}\" ->"));
        out(&format!("            Just {variant}"));
        out("");
    }
    out("        _ ->");
    out("            Nothing");
    out("");
    out("");
    out(&format!(
        "{{-| Decodes a code's text; text this build does not know gives `{unknown}`."
    ));
    out("-}");
    out("decoder : D.Decoder ErrorCode");
    out("decoder =");
    out(&format!(
        "    D.map (fromString >> Maybe.withDefault {unknown}) D.string"
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Every generated file: its path from the root and its text.
fn files() -> Vec<(&'static str, String)> {
    vec![
        ("js/src/error-codes.js", js_list()),
        ("js/src/error-codes.d.ts", js_types()),
        ("sync-wasm/src/error_codes.d.ts", wasm_types()),
        ("examples/todo-elm/src/Logsync/ErrorCode.elm", elm_module()),
    ]
}

#[test]
fn generated_files_are_up_to_date() {
    let bless = std::env::var_os("LOGSYNC_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, text) in files() {
        let full = root().join(path);
        let current = std::fs::read_to_string(&full).unwrap_or_default();
        if current == text {
            continue;
        }
        if bless {
            std::fs::write(&full, &text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        } else {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what sync-core's ErrorCode gives: run \
         `LOGSYNC_BLESS=1 cargo test -p sync-core --test generated` and commit the result"
    );
}

#[test]
fn every_code_appears_in_every_generated_file() {
    for (path, text) in files() {
        for code in ErrorCode::ALL {
            assert!(
                text.contains(&format!("'{code}'")) || text.contains(&format!("\"{code}\"")),
                "{path} lacks {code}"
            );
        }
    }
    let elm = elm_module();
    for code in ErrorCode::ALL {
        let variant = format!("{code:?}");
        assert!(
            elm.contains(&format!("\n    | {variant}\n"))
                || elm.contains(&format!("\n    = {variant}\n"))
        );
        assert!(elm.contains(&format!(
            "\"{}\" ->\n            Just {variant}\n",
            code.as_str()
        )));
    }
}

#[test]
fn code_texts_are_screaming_snake_variant_names() {
    for code in ErrorCode::ALL {
        let variant = format!("{code:?}");
        let mut expected = String::new();
        for (i, ch) in variant.chars().enumerate() {
            if ch.is_ascii_uppercase() && i > 0 {
                expected.push('_');
            }
            expected.push(ch.to_ascii_uppercase());
        }
        assert_eq!(code.as_str(), expected);
        assert!(
            !code.description().is_empty(),
            "{code:?} has no doc comment"
        );
        assert_eq!(ErrorCode::parse(code.as_str()), *code);
    }
    assert_eq!(ErrorCode::parse("NOT_A_CODE_YET"), ErrorCode::Unknown);
}
