//! `arcane-cli chat`: talk to a model through its chat template.
//!
//! Interactive (the default): one line per user turn, the reply streamed as it is generated,
//! the KV cache kept across turns (only the new part of the conversation runs through the
//! model), `/reset` to start over, Ctrl-D to leave. `--messages FILE.json` answers that
//! conversation once; `--print-prompt` shows the rendered prompt instead of generating.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arcane::chat::{self, ChatSession, ChatTemplate, Conversation, Message, RenderOptions};
use arcane::generation::{GenerateConfig, StopReason};
use arcane::tokenizer::{ModelTokenizer, StreamDecoder, TokenizerConfig};
use arcane::ArcaneError;
use burn::prelude::*;
use serde_json::json;

use crate::backend::{self, BackendKind, Task};
use crate::cli::ChatArgs;
use crate::model_arg::{load_model, load_tokenizer};

/// Resolves the template and the opening conversation, then prints the prompt or chats.
pub fn run(mut args: ChatArgs, backend: BackendKind) -> Result<()> {
    // A Hub id becomes its snapshot folder once, so the template, the stop ids and the weights
    // all come from the same resolved commit.
    args.model = crate::hub_model::model_dir(&args.model)?;
    let (tokenizer, template) = resolve_tokenizer_and_template(&args)?;
    let mut opening = Conversation::new();
    if let Some(system) = &args.system {
        opening.push(Message::new("system", system));
    }
    if let Some(path) = &args.messages {
        let file = Conversation::from_file(path).context("cannot read the conversation")?;
        if args.system.is_some() && file.role(0).as_deref() == Some("system") {
            bail!(
                "{} already opens with a system message; leave out --system",
                path.display()
            );
        }
        opening.extend(&file);
    }
    let chat = Chat {
        config: GenerateConfig {
            max_new_tokens: args.max_new_tokens,
            sampling: args.sampling.config()?,
            shapes: backend.shapes(),
            ..GenerateConfig::default()
        },
        args,
        tokenizer,
        template,
        opening,
    };
    if chat.args.print_prompt {
        return chat.print_prompt();
    }
    backend::run(backend, chat)
}

/// The model's tokenizer and template, or those of an SFT run given as `--adapter` (its
/// ChatML tokens and template, or its base's template); an explicit `--template` still wins.
fn resolve_tokenizer_and_template(args: &ChatArgs) -> Result<(ModelTokenizer, ChatTemplate)> {
    let tokenizer = load_tokenizer(&args.model)?;
    if let (Some(adapter), None) = (&args.adapter, &args.template) {
        let sft = arcane::training::sft_adapter_chat(adapter, &tokenizer)
            .context("cannot read the SFT run's chat settings")?;
        if let Some(pair) = sft {
            return Ok(pair);
        }
    }
    let template = resolve_template(args, &tokenizer)?;
    Ok((tokenizer, template))
}

/// `--template FILE` (with the model's special tokens, or those a JSON template file names
/// when the model names none), else the model's own template, else Arcane's ChatML for a
/// tokenizer that has its tokens.
fn resolve_template(args: &ChatArgs, tokenizer: &ModelTokenizer) -> Result<ChatTemplate> {
    if let Some(path) = &args.template {
        let template = ChatTemplate::from_file(path).context("cannot read the --template file")?;
        let mut tokens = tokenizer.special_tokens();
        if tokens.is_empty() && path.extension().is_some_and(|e| e == "json") {
            tokens = TokenizerConfig::from_file(path)
                .map(|c| c.special_tokens)
                .unwrap_or_default();
        }
        return Ok(template.with_special_tokens(tokens));
    }
    match chat::model_template(&args.model, tokenizer).context("cannot read the chat template")? {
        Some(template) => Ok(template),
        None => bail!(
            "{} has no chat template (no chat_template.jinja, chat_template.json or \
             \"chat_template\" in tokenizer_config.json) and its tokenizer ({}) has no ChatML \
             tokens; give one with --template FILE, or use a chat fine-tuned model",
            args.model.display(),
            tokenizer.name()
        ),
    }
}

struct Chat {
    args: ChatArgs,
    config: GenerateConfig,
    tokenizer: ModelTokenizer,
    template: ChatTemplate,
    /// The system message and/or the --messages conversation.
    opening: Conversation,
}

impl Chat {
    /// The conversation rendered for a reply and its ids (the template writes the special
    /// tokens, so none are added). A conversation that ends with the assistant's message is
    /// continued (the reply goes on from its last word), else a new reply is opened.
    fn prompt(&self, conversation: &Conversation) -> arcane::Result<(String, Vec<u32>)> {
        let last = conversation.role(conversation.len().saturating_sub(1));
        let continues = last.as_deref() == Some("assistant");
        let options = RenderOptions {
            add_generation_prompt: !continues,
            continue_final_message: continues,
            ..RenderOptions::default()
        };
        let text = self.template.render(conversation, &options)?;
        let ids = self.tokenizer.encode_chat(&text)?;
        Ok((text, ids))
    }

    fn print_prompt(&self) -> Result<()> {
        let (text, ids) = self.prompt(&self.opening)?;
        if self.args.json {
            println!("{}", json!({"text": text, "ids": ids}));
        } else {
            print!("{text}");
            std::io::stdout().flush()?;
        }
        Ok(())
    }
}

impl Task for Chat {
    type Output = ();

    fn run<B: Backend>(mut self, device: B::Device) -> Result<()> {
        let model = load_model::<B>(&self.args.model, self.args.adapter.as_deref(), &device)?;
        let vocab = model.config().vocab_size;
        self.config.vocab_limit = Some(vocab.min(self.tokenizer.vocab_size()));
        self.config.stop_tokens =
            chat::stop_ids(&self.template, &self.tokenizer, Some(&self.args.model));
        let mut session = ChatSession::new(&model);
        if self.args.messages.is_some() {
            let conversation = self.opening.clone();
            self.turn(&model, &mut session, &conversation)?;
            return Ok(());
        }
        self.interactive(&model, &mut session)
    }
}

impl Chat {
    /// Reads user lines until end of input; `/reset` starts over.
    fn interactive<B: Backend>(
        &self,
        model: &arcane::Gpt<B>,
        session: &mut ChatSession<B>,
    ) -> Result<()> {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        if terminal && !self.args.json {
            eprintln!(
                "[chat with {} via {}; /reset starts over, Ctrl-D leaves]",
                self.args.model.display(),
                self.template.origin()
            );
        }
        let mut conversation = self.opening.clone();
        let mut lines = stdin.lock().lines();
        loop {
            if terminal && !self.args.json {
                print!("> ");
                std::io::stdout().flush()?;
            }
            let Some(line) = lines.next().transpose()? else {
                if terminal {
                    println!();
                }
                return Ok(());
            };
            let line = line.trim_end_matches('\r');
            match line.trim() {
                "" => continue,
                "/reset" => {
                    conversation = self.opening.clone();
                    session.reset();
                    eprintln!("[conversation reset]");
                    continue;
                }
                _ => {}
            }
            conversation.push(Message::new("user", line));
            match self.turn(model, session, &conversation) {
                Ok(reply) => conversation.push(Message::new("assistant", reply)),
                Err(e) if is_context_full(&e) => {
                    // Start over from the opening and this message, and try once more.
                    eprintln!(
                        "[the conversation no longer fits the model's context of {} tokens; \
                         starting over from this message]",
                        model.config().max_seq_len
                    );
                    session.reset();
                    conversation = self.opening.clone();
                    conversation.push(Message::new("user", line));
                    match self.turn(model, session, &conversation) {
                        Ok(reply) => conversation.push(Message::new("assistant", reply)),
                        Err(e) => {
                            conversation.pop();
                            eprintln!("error: {e:#}");
                        }
                    }
                }
                Err(e) => {
                    // A template that refuses this turn, for example: say so and go on.
                    conversation.pop();
                    eprintln!("error: {e:#}");
                }
            }
        }
    }

    /// Answers `conversation`, streaming the reply (or printing it as JSON); returns its text.
    fn turn<B: Backend>(
        &self,
        model: &arcane::Gpt<B>,
        session: &mut ChatSession<B>,
        conversation: &Conversation,
    ) -> Result<String> {
        let (_, prompt) = self.prompt(conversation)?;
        let start = Instant::now();
        let mut stdout = std::io::stdout().lock();
        let mut stream = StreamDecoder::new(self.tokenizer.clone());
        let mut write_error = None;
        let stops = &self.config.stop_tokens;
        let turn = session.reply(model, &prompt, &self.config, |id| {
            if self.args.json || stops.contains(&id) {
                return;
            }
            let piece = stream.push(id).unwrap_or_default();
            if let Err(e) = write!(stdout, "{piece}").and_then(|_| stdout.flush()) {
                write_error.get_or_insert(e);
            }
        })?;
        let ids = &turn.generation.ids;
        let text_ids = match ids.last() {
            Some(last) if turn.generation.stop == StopReason::EndOfText && stops.contains(last) => {
                &ids[..ids.len() - 1]
            }
            _ => &ids[..],
        };
        let reply = self.tokenizer.decode(text_ids)?;
        if self.args.json {
            writeln!(stdout, "{}", json!({"reply": reply, "ids": ids}))?;
        } else {
            writeln!(stdout, "{}", stream.finish())?;
        }
        if let Some(e) = write_error {
            return Err(e.into());
        }
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "[{}; {} tokens in {:.2} s; prompt {} tokens, {} from the cache]",
            turn.generation.stop,
            ids.len(),
            seconds,
            turn.reused + turn.computed,
            turn.reused
        );
        Ok(reply)
    }
}

/// Whether `error` says the prompt does not fit the model's context.
fn is_context_full(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<ArcaneError>(),
        Some(ArcaneError::ContextTooLong { .. })
    )
}
