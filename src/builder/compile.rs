//! An [`ImageBuilder`] as the planner's input: one stage whose typed instructions are the
//! builder's steps, every value escaped with [`literal`], each [`Layer`] a `COPY <name>/ /` from
//! the staged context, and an OCI-layout base as a named context.

use std::collections::BTreeMap;

use super::literal::literal;
use super::{Base, BuilderError, ImageBuilder, Layer, Step};
use crate::contexts::{ContextSource, LayoutRef, NamedContext, NamedContexts};
use crate::dockerfile::{CommandForm, CopyArgs, Instruction, Located};
use crate::plan::{BaseSpec, Stage, Stages};

/// The named context an OCI-layout base is read through.
const LAYOUT_BASE: &str = "ocipush-builder-base";

/// What the build builds, and the layers to stage first (by directory name).
pub(super) struct Compiled {
    pub(super) stages: Stages,
    pub(super) contexts: NamedContexts,
    pub(super) layers: Vec<(String, Layer)>,
}

pub(super) fn compile(b: &ImageBuilder) -> Result<Compiled, BuilderError> {
    let mut contexts = NamedContexts::default();
    let base = match &b.base {
        Base::Scratch => BaseSpec::Scratch,
        Base::Registry(r) => {
            if r.is_empty() {
                return Err(BuilderError::Invalid(
                    "the base image reference is empty".into(),
                ));
            }
            BaseSpec::Image(r.clone())
        }
        Base::Layout { dir, tag } => {
            contexts.push(NamedContext {
                name: LAYOUT_BASE.into(),
                given: format!("oci-layout://{}", dir.display()),
                source: ContextSource::Layout {
                    dir: dir.clone(),
                    reference: tag.clone().map_or(LayoutRef::Default, LayoutRef::Tag),
                },
            });
            BaseSpec::Image(LAYOUT_BASE.into())
        }
    };
    let mut instructions = Vec::new();
    let mut layers = Vec::new();
    for step in &b.steps {
        let line = instructions.len() + 2;
        let (instruction, original) = match step {
            Step::Layer(layer) => {
                let name = match &layer.name {
                    Some(n) => checked_name(n)?,
                    None => format!("layer-{}", layers.len() + 1),
                };
                if layers.iter().any(|(n, _)| n == &name) {
                    return Err(BuilderError::Invalid(format!(
                        "two layers are named {name:?}; name each layer once"
                    )));
                }
                let copy = CopyArgs {
                    srcs: vec![format!("{}/", literal(&name))],
                    dest: "/".into(),
                    chown: layer.owner.as_deref().map(literal),
                    merge_dirs: true,
                    ..CopyArgs::default()
                };
                let shown = match &layer.owner {
                    Some(o) => format!("COPY --chown={o} {name}/ /"),
                    None => format!("COPY {name}/ /"),
                };
                layers.push((name, layer.clone()));
                (Instruction::Copy(copy), shown)
            }
            Step::Entrypoint(argv) => (
                Instruction::Entrypoint(CommandForm::Exec(argv.clone())),
                format!("ENTRYPOINT {}", json(argv)),
            ),
            Step::Cmd(argv) => (
                Instruction::Cmd(CommandForm::Exec(argv.clone())),
                format!("CMD {}", json(argv)),
            ),
            Step::Env(k, v) => (
                Instruction::Env(vec![(literal(k), literal(v))]),
                format!("ENV {k}={v}"),
            ),
            Step::Label(k, v) => (
                Instruction::Label(vec![(literal(k), literal(v))]),
                format!("LABEL {k}={v}"),
            ),
            Step::Workdir(p) => (Instruction::Workdir(literal(p)), format!("WORKDIR {p}")),
            Step::User(u) => (Instruction::User(literal(u)), format!("USER {u}")),
            Step::Expose(p) => (Instruction::Expose(vec![literal(p)]), format!("EXPOSE {p}")),
            Step::Volume(p) => (
                Instruction::Volume(vec![literal(p)]),
                format!("VOLUME {}", json(std::slice::from_ref(p))),
            ),
            Step::StopSignal(s) => (
                Instruction::StopSignal(literal(s)),
                format!("STOPSIGNAL {s}"),
            ),
        };
        instructions.push(Located {
            start_line: line,
            end_line: line,
            original,
            instruction,
        });
    }
    let stage = Stage {
        index: 0,
        name: None,
        base,
        platform: None,
        line: 1,
        instructions,
    };
    Ok(Compiled {
        stages: Stages {
            stages: vec![stage],
            global_args: BTreeMap::new(),
            escape: '\\',
        },
        contexts,
        layers,
    })
}

/// A layer name: a directory of the staged context, so a plain name.
fn checked_name(name: &str) -> Result<String, BuilderError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(BuilderError::Invalid(format!(
            "invalid layer name {name:?}: use up to 128 letters, digits, '.', '_' and '-', not starting with '.'"
        )))
    }
}

fn json(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_default()
}
