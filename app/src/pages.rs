//! Pages that belong to no particular area.

use minijinja::context;
use poem::{Response, handler};

use crate::{error::Result, web::ctx::Ctx};

#[handler]
pub async fn home(ctx: Ctx) -> Result<Response> {
    ctx.render("home.html", context! {})
}
