//! Tokenizers from model directories: a Hugging Face `tokenizer.json` gives the ids of the
//! Python `tokenizers` library, and a tokenizer that does not fit its model is refused.

mod common;

use arcane::tokenizer::{ModelTokenizer, StreamDecoder};
use arcane::{load_tokenizer, Tokenizer};
use common::{edited_copy, fixture, ids, tokenizer_reference as reference};

#[test]
fn a_llama_tokenizer_json_gives_the_python_ids() {
    let r = reference();
    let tok = load_tokenizer(&fixture("llama")).unwrap();
    assert!(matches!(tok, ModelTokenizer::HuggingFace(_)));
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(tok.eos(), Some(2), "</s>, as config.json says");
    assert_eq!(
        tok.document_separator(),
        Some(1),
        "<s> starts each document"
    );
    for (text, expected) in r["strings"].as_object().unwrap() {
        assert_eq!(
            tok.encode_prompt(text).unwrap(),
            ids(&expected["ids"]),
            "{text:?}"
        );
        let plain = tok.encode(text).unwrap();
        assert_eq!(plain, ids(&expected["ids_no_special"]), "{text:?}");
        assert_eq!(
            tok.decode(&plain).unwrap(),
            expected["decoded"].as_str().unwrap()
        );
        assert_eq!(tok.decode(&plain).unwrap(), *text, "round trip of {text:?}");
        // Streaming, one id at a time, gives the same text and never a broken character.
        let mut stream = StreamDecoder::new(tok.clone());
        let mut streamed = String::new();
        for &id in &plain {
            let piece = stream.push(id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{text:?}: broken piece {piece:?}"
            );
            streamed.push_str(&piece);
        }
        streamed.push_str(&stream.finish());
        assert_eq!(
            streamed.trim_start(),
            text.trim_start(),
            "streamed {text:?}"
        );
    }
    assert!(
        tok.decode(&[512]).is_err(),
        "ids past the vocabulary are an error"
    );
}

#[test]
fn gpt2_models_keep_gpt2s_tokenizer() {
    let tok = load_tokenizer(&fixture("gpt2")).unwrap();
    assert!(matches!(tok, ModelTokenizer::Gpt2(_)));
    let r = common::reference();
    assert_eq!(
        tok.encode("Hello world").unwrap(),
        ids(&r["tokenizer"]["Hello world"])
    );
    assert_eq!(
        tok.encode("Hello world").unwrap(),
        Tokenizer::gpt2().encode("Hello world")
    );
}

#[test]
fn a_tokenizer_that_does_not_fit_its_model_is_refused() {
    // A Llama folder without its tokenizer: GPT-2's ids would be garbage for it.
    let bare = edited_copy("llama", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap()
    });
    let err = load_tokenizer(bare.path()).unwrap_err().to_string();
    assert!(
        err.contains("vocabulary of 512") && err.contains("copy the model's tokenizer.json"),
        "{err}"
    );
    // An Arcane manifest that names GPT-2's tokenizer for a 512-token model.
    let arcane = tempfile::tempdir().unwrap();
    let model =
        arcane::load_model::<common::TestBackend>(&fixture("llama"), &Default::default()).unwrap();
    arcane::save_model(&model, arcane.path()).unwrap();
    let err = load_tokenizer(arcane.path()).unwrap_err().to_string();
    assert!(
        err.contains("vocabulary of 512 does not fit its tokenizer gpt2, which has 50257 tokens")
            && err.contains("tokenizer.json"),
        "{err}"
    );
    // Saved with its own tokenizer, the Arcane copy reads it back.
    let own = tempfile::tempdir().unwrap();
    let tok = load_tokenizer(&fixture("llama")).unwrap();
    arcane::checkpoint::save_model_with_tokenizer(&model, own.path(), Some(&tok)).unwrap();
    let back = load_tokenizer(own.path()).unwrap();
    assert_eq!(
        back.encode("Call me").unwrap(),
        tok.encode("Call me").unwrap()
    );
    // A tokenizer.json that is not one.
    let broken = edited_copy("llama", |d| {
        std::fs::write(d.join("tokenizer.json"), b"{\"model\": 3}").unwrap()
    });
    let err = load_tokenizer(broken.path()).unwrap_err().to_string();
    assert!(err.contains("not a Hugging Face tokenizer file"), "{err}");
}
