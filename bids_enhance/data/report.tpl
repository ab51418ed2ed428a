<!DOCTYPE html>
{#- bids_enhance subject report. Rendered by bids_enhance.reports.assemble with nireports'
    Report objects (sections → reportlets → components). Self-contained: the CSS is inlined,
    there is no script and no external asset, so the report opens offline. -#}
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="bids_enhance {{ version }} (nireports assembler)">
<title>{{ title }}</title>
<style>
{% include "report.css" %}
</style>
{% for hh in header %}
{{ hh }}
{% endfor %}
</head>
<body>
<header class="be-topbar">
  <div class="be-brand">bids_enhance<small>sub-{{ subject }}</small></div>
  <ul class="be-nav">
  {% for sub_report in sections %}
    {% if sub_report.isnested %}
    <li><a href="#{{ sub_report.name }}">{{ sub_report.title or sub_report.name }} ▾</a>
      <ul>
      {% for rlet in sub_report.reportlets %}
        {% if rlet.title %}<li><a href="#{{ rlet.name }}">{{ rlet.title }}</a></li>{% endif %}
      {% endfor %}
      </ul>
    </li>
    {% else %}
    <li><a href="#{{ sub_report.name }}">{{ sub_report.title or sub_report.name }}{% if sub_report.name == "Errors" and n_errors %}<span class="be-badge">{{ n_errors }}</span>{% endif %}</a></li>
    {% endif %}
  {% endfor %}
  </ul>
  {% for item in navbar %}
  {{ item }}
  {% endfor %}
</header>
<main>
{% if n_errors %}
<div class="be-alert be-alert-error be-banner">
  <strong>This run did not complete cleanly:</strong>
  {{ problems_text }}
  See <a href="#Errors">Errors</a>.
</div>
{% endif %}
{% for sub_report in sections %}
  {% if sub_report.reportlets %}
  <section id="{{ sub_report.name }}" class="be-section">
    <h1>{{ sub_report.title or sub_report.name }}</h1>
    {% for rlet in sub_report.reportlets %}
      {% if sub_report.isnested and rlet.title %}
        {% if not loop.first %}</div>{% endif %}
    <div class="be-group" id="{{ rlet.name }}">
      <h2>{{ rlet.title }}</h2>
      {% endif %}
      <div class="be-reportlet"{% if not sub_report.isnested %} id="{{ rlet.name }}"{% endif %}>
        {% if rlet.title and not sub_report.isnested %}<h2>{{ rlet.title }}</h2>{% endif %}
        {% if rlet.subtitle %}<h3>{{ rlet.subtitle }}</h3>{% endif %}
        {% if rlet.description %}<p class="be-desc">{{ rlet.description }}</p>{% endif %}
        {% for elem in rlet.components %}
          {% if elem[0] %}
            {% if elem[1] %}<p class="be-caption">{{ elem[1] }}</p>{% endif %}
            {{ elem[0] }}
          {% endif %}
        {% endfor %}
      </div>
      {% if sub_report.isnested and loop.last %}</div>{% endif %}
    {% endfor %}
  </section>
  {% endif %}
{% endfor %}
</main>
<footer class="be-footer">
  Report generated {{ generated }} by bids_enhance {{ version }} for run <code>{{ run_uuid }}</code>,
  from the figures in <code>sub-{{ subject }}/figures/</code>.
  {% for ff in footer %}
  {{ ff }}
  {% endfor %}
</footer>
</body>
</html>
