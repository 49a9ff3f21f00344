/* Toroid: "SVG" and "PNG" download buttons in the modebar of every Plotly graph (docs/dashboard.md, "Export").

   Dash loads this file before any graph is drawn and loads plotly.js later, when the first graph mounts. The moment
   plotly.js defines window.Plotly, the buttons become part of Plotly's default config (Plotly.setPlotConfig), which
   every graph copies when it is first plotted and keeps through each redraw (Plotly.react on every poll), so no view
   has to name them. A graph's own config still wins: a view that sets modeBarButtonsToAdd replaces these buttons.
   The file is named after the Dash id of the graph: toroid-<id>.svg / .png at the size shown (PNG at 2x). */
(function () {
  'use strict';

  function graphName(gd) {
    var holder = gd.closest('[id]');
    return 'toroid-' + ((holder && holder.id) || 'figure');
  }

  function download(gd, format) {
    var layout = gd._fullLayout || {};
    return window.Plotly.downloadImage(gd, {
      format: format,
      filename: graphName(gd),
      width: layout.width || 900,
      height: layout.height || 500,
      scale: format === 'png' ? 2 : 1,
    });
  }

  function icon(label) {
    return {
      svg: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 30 16" class="toroid-export-icon">' +
        '<text x="15" y="12.5" text-anchor="middle">' + label + '</text></svg>',
    };
  }

  var BUTTONS = [
    {name: 'toroidSvg', title: 'Download as SVG (vector)', icon: icon('SVG'),
     click: function (gd) { download(gd, 'svg'); }},
    {name: 'toroidPng', title: 'Download as PNG', icon: icon('PNG'),
     click: function (gd) { download(gd, 'png'); }},
  ];

  function configure(plotly) {
    if (plotly && typeof plotly.setPlotConfig === 'function' && !plotly.__toroidExports) {
      plotly.setPlotConfig({modeBarButtonsToAdd: BUTTONS});
      plotly.__toroidExports = true;
    }
  }

  if (window.Plotly) {
    configure(window.Plotly);
  } else {
    var loaded;
    Object.defineProperty(window, 'Plotly', {
      configurable: true,
      enumerable: true,
      get: function () { return loaded; },
      set: function (value) { loaded = value; configure(value); },
    });
  }
})();
