// Tokens -> statement tree, following Jinja2's grammar and operator precedence.
#pragma once
#include <string>

#include "core/chat/ast.h"

namespace pagoda::jinja {

// Throws TemplateError ("line N: ...") on a syntax error.
Body parse_template(const std::string& src);

}  // namespace pagoda::jinja
